import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSyntheticArchive } from '@covnet/imaging';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { scanCommand } from '../src/commands/scan';

describe('scan text output', () => {
  let work = '';
  let exam = '';

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'covnet-scan-output-'));
    await writeSyntheticArchive(join(work, 'archive'), { exams: 1, seed: 5, rows: 32, slices: 6 });
    exam = join(work, 'archive', 'exam-0001');
    // A second copy of one slice puts two files at the same position.
    const first = (await readdir(exam)).sort()[0];
    await copyFile(join(exam, first), join(exam, `copy-of-${first}`));
  });

  afterAll(() => rm(work, { recursive: true, force: true }));

  describe('when a series has a duplicate position', () => {
    it('names the rejected series and the reason', async () => {
      const stdout: string[] = [];
      const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => stdout.push(String(chunk)) > 0);
      const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
      try {
        expect(await scanCommand([exam, '--cache-dir', join(work, 'cache')])).toBe(0);
      } finally {
        out.mockRestore();
        err.mockRestore();
      }
      const text = stdout.join('');
      expect(text).toMatch(new RegExp(`rejected series ${exam} \\(7 files\\): .*position`));
      expect(text).toContain('0 series, 1 series rejected, 0 files skipped');
    });
  });
});
