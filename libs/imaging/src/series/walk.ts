import type { Dirent } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

/** A directory entry the walk does not read, with the reason. */
export interface WalkSkip {
  path: string;
  code: 'not-a-file' | 'io-error';
  reason: string;
}

interface WalkState {
  root: string;
  /** Folders walked, by real path, with the path they were walked under. */
  folders: Map<string, string>;
  /** Files listed, by device and inode, with the path they were listed under. */
  files: Map<string, string>;
  listed: string[];
  skipped: WalkSkip[];
}

/**
 * Lists every regular file under a directory, recursively, in a stable (sorted) order.
 * Symbolic links are followed, because archives and PACS exports often link to their images
 * or folders, but each file and folder is read once: a second path to one already listed is
 * skipped, naming the first. In each folder, real entries come before links, so a file is
 * listed under its own path where the folder has it. Broken links, link loops, links to a
 * folder that contains the root, FIFOs, sockets and devices are skipped too, because reading
 * a FIFO or a device could block the scan forever. A subfolder that cannot be listed is
 * skipped with code io-error.
 * @throws Error when the root itself is not a readable folder.
 */
export async function listFilesRecursively(dir: string): Promise<{ files: string[]; skipped: WalkSkip[] }> {
  let root: string;
  try {
    root = await realpath(dir);
    if (!(await stat(root)).isDirectory()) throw new Error('it is not a folder');
  } catch (error) {
    throw new Error(`cannot scan ${dir}: ${describeError(error)}`);
  }
  const state: WalkState = { root, folders: new Map([[root, dir]]), files: new Map(), listed: [], skipped: [] };
  await walk(dir, state, true);
  return { files: state.listed, skipped: state.skipped };
}

async function walk(dir: string, state: WalkState, isRoot: boolean): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if (isRoot) throw new Error(`cannot scan ${dir}: ${describeError(error)}`);
    state.skipped.push({ path: dir, code: 'io-error', reason: `folder cannot be listed: ${describeError(error)}` });
    return;
  }
  // Real entries first, then links, each group by name.
  entries.sort((a, b) => Number(a.isSymbolicLink()) - Number(b.isSymbolicLink()) || a.name.localeCompare(b.name, 'en'));
  for (const entry of entries) {
    const path = join(dir, entry.name);
    const kind = await entryKind(path, entry);
    if (kind === 'file') await addFile(path, state);
    else if (kind === 'directory') await enterFolder(path, state);
    else state.skipped.push({ path, code: 'not-a-file', reason: kind });
  }
}

async function addFile(path: string, state: WalkState): Promise<void> {
  const { dev, ino } = await stat(path);
  const key = `${dev}:${ino}`;
  const first = state.files.get(key);
  if (first !== undefined) {
    state.skipped.push({ path, code: 'not-a-file', reason: `the same file as ${first}, which is already listed` });
    return;
  }
  state.files.set(key, path);
  state.listed.push(path);
}

async function enterFolder(path: string, state: WalkState): Promise<void> {
  const real = await realpath(path);
  const first = state.folders.get(real);
  if (first !== undefined) {
    state.skipped.push({ path, code: 'not-a-file', reason: `the same folder as ${first}, which is already scanned` });
    return;
  }
  // A link to the root or one of its parents would scan the root again, or far beyond it.
  const fromTarget = relative(real, state.root);
  if (fromTarget === '' || (!fromTarget.startsWith('..') && !fromTarget.startsWith(sep))) {
    state.skipped.push({ path, code: 'not-a-file', reason: `symbolic link to ${real}, which contains the scanned folder` });
    return;
  }
  state.folders.set(real, path);
  await walk(path, state, false);
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
    return `symbolic link that cannot be followed (${describeError(error)})`;
  }
}

function describeSpecial(entry: { isFIFO(): boolean; isSocket(): boolean; isBlockDevice(): boolean; isCharacterDevice(): boolean }): string {
  if (entry.isFIFO()) return 'FIFO';
  if (entry.isSocket()) return 'socket';
  if (entry.isBlockDevice()) return 'block device';
  if (entry.isCharacterDevice()) return 'character device';
  return 'special file';
}

// The errno name and its usual words ("EACCES: permission denied"), without the call and path Node adds.
function describeError(error: unknown): string {
  const { code, message } = error as NodeJS.ErrnoException;
  if (code === 'ENOENT') return 'no such file or folder';
  if (code === 'ENOTDIR') return 'not a folder';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return message;
}
