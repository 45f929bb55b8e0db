import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** File that marks a folder as written by the demo, so a later run may empty it. */
const MARKER = '.covnet-demo';

/**
 * Empties and reuses the demo's work folder. A folder that exists, is not
 * empty and lacks the demo's marker file is left untouched: the demo only
 * deletes what it wrote itself.
 * @throws Error naming the folder when it contains files the demo did not write.
 */
export async function prepareWorkDir(workDir: string): Promise<void> {
  if (existsSync(workDir)) {
    const entries = await readdir(workDir);
    if (entries.length > 0 && !entries.includes(MARKER)) {
      throw new Error(
        `work folder ${workDir} is not empty and was not written by the demo; choose an empty or new folder with --work-dir`,
      );
    }
    await rm(workDir, { recursive: true, force: true });
  }
  await mkdir(workDir, { recursive: true });
  await writeFile(join(workDir, MARKER), 'written by npm run demo; the next run empties this folder\n');
}
