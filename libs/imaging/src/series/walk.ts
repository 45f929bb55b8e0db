import type { Dirent } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** A directory entry the walk does not read, with the reason. */
export interface WalkSkip {
  path: string;
  code: 'not-a-file';
  reason: string;
}

/**
 * Lists every regular file under a directory, recursively, in a stable (sorted) order.
 * Symbolic links are followed, because archives and PACS exports often link to their
 * images or folders. A link back into a folder already walked is not followed again.
 * Broken links, link loops, FIFOs, sockets and devices are listed in `skipped` instead,
 * because reading a FIFO or a device could block the scan forever.
 */
export async function listFilesRecursively(dir: string): Promise<{ files: string[]; skipped: WalkSkip[] }> {
  const files: string[] = [];
  const skipped: WalkSkip[] = [];
  await walk(dir, new Set([await realpath(dir)]), files, skipped);
  return { files, skipped };
}

async function walk(dir: string, visited: Set<string>, files: string[], skipped: WalkSkip[]): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name, 'en'));
  for (const entry of entries) {
    const path = join(dir, entry.name);
    const kind = await entryKind(path, entry);
    if (kind === 'file') {
      files.push(path);
    } else if (kind === 'directory') {
      const real = await realpath(path);
      if (visited.has(real)) {
        skipped.push({ path, code: 'not-a-file', reason: `symbolic link to ${real}, a folder already scanned` });
        continue;
      }
      visited.add(real);
      await walk(path, visited, files, skipped);
    } else {
      skipped.push({ path, code: 'not-a-file', reason: kind });
    }
  }
}

// Classifies an entry, looking through symbolic links, and describes anything but a file or a folder.
async function entryKind(path: string, entry: Dirent): Promise<'file' | 'directory' | string> {
  if (entry.isFile()) return 'file';
  if (entry.isDirectory()) return 'directory';
  if (!entry.isSymbolicLink()) return `${describeSpecial(entry)}, not a regular file`;
  try {
    const target = await stat(path);
    if (target.isFile()) return 'file';
    if (target.isDirectory()) return 'directory';
    return `symbolic link to a ${describeSpecial(target)}, not a regular file`;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') return 'symbolic link loop';
    if (code === 'ENOENT') return 'broken symbolic link: its target does not exist';
    return `symbolic link that cannot be followed (${(error as Error).message})`;
  }
}

function describeSpecial(entry: { isFIFO(): boolean; isSocket(): boolean; isBlockDevice(): boolean; isCharacterDevice(): boolean }): string {
  if (entry.isFIFO()) return 'FIFO';
  if (entry.isSocket()) return 'socket';
  if (entry.isBlockDevice()) return 'block device';
  if (entry.isCharacterDevice()) return 'character device';
  return 'special file';
}
