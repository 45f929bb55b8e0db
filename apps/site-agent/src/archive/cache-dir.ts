import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Returns the agent's default cache folder, `~/.cache/covnet-site-agent`. It contains the scan
 * indexes and the preprocessed exams, both derived from the archive and safe to delete.
 */
export function defaultCacheDir(): string {
  return join(homedir(), '.cache', 'covnet-site-agent');
}

/** Returns the path of the scan index of one archive folder inside a cache folder. */
export function scanIndexPath(cacheDir: string, archiveDir: string): string {
  const name = createHash('sha256').update(archiveDir).digest('hex').slice(0, 32);
  return join(cacheDir, 'scan-index', `${name}.json`);
}
