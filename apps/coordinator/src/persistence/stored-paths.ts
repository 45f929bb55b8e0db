import { isAbsolute, relative, resolve, sep } from 'node:path';

/**
 * A file path in the database that cannot be used: it leads outside the data
 * dir, so it would read or write another data dir's files.
 */
export class StoredPathError extends Error {
  override name = 'StoredPathError';
}

/**
 * Returns `path`, a file inside `dataDir`, relative to `dataDir` with `/`
 * separators, as the database stores it. Relative paths keep a data dir
 * usable after it is moved, and make a copy of it read its own files.
 * @throws StoredPathError when `path` is not inside `dataDir`.
 */
export function toStoredPath(dataDir: string, path: string): string {
  const inside = relativeInside(dataDir, path);
  if (inside === null) throw new StoredPathError(`file ${path} is outside the data dir ${dataDir}, so its path cannot be stored`);
  return inside.split(sep).join('/');
}

/**
 * Returns the absolute path of a stored file path: a relative one is taken
 * from `dataDir`. An absolute one, as coordinators stored before paths were
 * relative, is accepted when it lies inside `dataDir`.
 * @param fileDescription names the file in the error, e.g. `checkpoint of model version 3`.
 * @throws StoredPathError when the path resolves outside `dataDir`.
 */
export function resolveStoredPath(dataDir: string, stored: string, fileDescription: string): string {
  const path = resolve(dataDir, stored);
  if (relativeInside(dataDir, path) === null) {
    const hint = isAbsolute(stored)
      ? 'the database was written for another data dir: a moved or copied data dir keeps only paths inside itself, so start the coordinator with the data dir that contains this file'
      : 'the stored path leaves the data dir';
    throw new StoredPathError(`${fileDescription}: stored path ${stored} resolves to ${path}, outside the data dir ${resolve(dataDir)}; ${hint}`);
  }
  return path;
}

/** Returns whether a stored path is an absolute path inside `dataDir`, which `toStoredPath` turns relative. */
export function isLegacyAbsolute(dataDir: string, stored: string): boolean {
  return isAbsolute(stored) && relativeInside(dataDir, stored) !== null;
}

// NOTE: the check compares paths as strings; a symbolic link inside the data
// dir that points elsewhere is followed without complaint.
function relativeInside(dataDir: string, path: string): string | null {
  const inside = relative(resolve(dataDir), resolve(path));
  if (inside === '' || inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside)) return null;
  return inside;
}
