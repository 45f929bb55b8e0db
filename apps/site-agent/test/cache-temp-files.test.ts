import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writeSyntheticArchive } from '@covnet/imaging';
import { SiteArchive } from '../src/archive/site-archive';

const KEY = 'a'.repeat(64);

/** Returns the pid of a process that has exited, so that no process owns a temporary file named after it. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

describe('preprocess cache temporary files', () => {
  const folders: string[] = [];

  afterEach(async () => {
    for (const folder of folders.splice(0)) await rm(folder, { recursive: true, force: true });
  });

  it('removes those of ended processes at open', async () => {
    const root = await mkdtemp(join(tmpdir(), 'agent-cache-temp-'));
    folders.push(root);
    const archive = join(root, 'archive');
    await writeSyntheticArchive(archive, { exams: 2, seed: 5, rows: 32, valFraction: 0.5 });
    const cacheDir = join(root, 'cache');
    const preprocessed = join(cacheDir, 'preprocessed');
    await mkdir(preprocessed, { recursive: true });

    const dead = await deadPid();
    // A crash between writeFile and rename leaves `<key>.bin.<pid>.tmp`.
    const stale = `${KEY}.bin.${dead}.tmp`;
    // The temporary file of a running agent sharing the cache folder stays.
    const live = `${KEY}.bin.${process.pid}.tmp`;
    const foreign = ['notes.tmp', `${KEY}.bin`, `${KEY}.bin.tmp`, `other.bin.${dead}.tmp`];
    for (const name of [stale, live, ...foreign]) await writeFile(join(preprocessed, name), 'partial');

    await SiteArchive.open(archive, { cacheDir });

    expect(existsSync(join(preprocessed, stale))).toBe(false);
    expect(existsSync(join(preprocessed, live))).toBe(true);
    for (const name of foreign) expect(existsSync(join(preprocessed, name)), name).toBe(true);
    expect((await readdir(preprocessed)).sort()).toEqual([live, ...foreign].sort());
  });

  it('opens without a cache folder', async () => {
    const root = await mkdtemp(join(tmpdir(), 'agent-cache-temp-'));
    folders.push(root);
    const archive = join(root, 'archive');
    await writeSyntheticArchive(archive, { exams: 2, seed: 5, rows: 32, valFraction: 0.5 });
    const archiveOpened = await SiteArchive.open(archive, { cacheDir: join(root, 'never-created') });
    expect(archiveOpened.examCount).toBe(2);
    expect(existsSync(join(root, 'never-created'))).toBe(false);
  });
});
