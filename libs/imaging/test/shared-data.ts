import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Root of the shared real-data folder, read in place and never copied into the
 * repository: `shared/data` beside the repository's folder, or COVNET_SHARED_DATA.
 */
export const SHARED_DATA_ROOT = process.env.COVNET_SHARED_DATA ?? join(__dirname, '..', '..', '..', '..', 'shared', 'data');

/** Resolves a folder of the shared data and warns (visibly, once per call) when it is absent. */
export function sharedDataDir(name: string): { dir: string; present: boolean } {
  const dir = join(SHARED_DATA_ROOT, name);
  const present = existsSync(dir);
  if (!present) console.warn(`[imaging tests] skipping tests on ${dir}: folder not found`);
  return { dir, present };
}
