import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { prepareWorkDir } from '../src/work-dir';

describe('prepareWorkDir', () => {
  const root = mkdtempSync(join(tmpdir(), 'covnet-workdir-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  describe('when the folder holds files the demo did not write', () => {
    it('rejects it and deletes nothing', async () => {
      const folder = join(root, 'someone-else');
      await prepareWorkDir(join(folder)); // creates it, with the marker
      rmSync(join(folder, '.covnet-demo'));
      writeFileSync(join(folder, 'thesis.tex'), 'precious');
      await expect(prepareWorkDir(folder)).rejects.toThrow(/not empty and was not written by the demo/);
      expect(readdirSync(folder)).toEqual(['thesis.tex']);
    });
  });

  describe('when the folder is a previous demo run', () => {
    it('empties it and marks it again', async () => {
      const folder = join(root, 'previous-run');
      await prepareWorkDir(folder);
      writeFileSync(join(folder, 'old.log'), 'old');
      await prepareWorkDir(folder);
      expect(existsSync(join(folder, 'old.log'))).toBe(false);
      expect(readdirSync(folder)).toEqual(['.covnet-demo']);
    });
  });
});
