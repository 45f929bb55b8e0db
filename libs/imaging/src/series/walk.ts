import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** Lists every regular file under a directory, recursively, in a stable (sorted) order. Symbolic links are not followed. */
export async function listFilesRecursively(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name, 'en'));

  const files: string[] = [];
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await listFilesRecursively(path)));
    else if (entry.isFile()) files.push(path);
  }
  return files;
}
