import { Injectable } from '@nestjs/common';
import { mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';

// The files a model store writes in its checkpoint folder, and the temporary
// files `writeAtomic` names after them: `<file>.<process id>.tmp`.
const OWNED_TEMP_FILE = /^(model-v\d+\.cvnw|fedadam-v\d+\.state|experiment\.json)\.\d+\.tmp$/;
const OWNER_FILE = 'experiment.json';

/**
 * Checkpoint files on disk: `<data dir>/checkpoints/<experiment>/model-v<N>.cvnw`,
 * or `<data dir>/checkpoints/model-v<N>.cvnw` for a data dir of one experiment.
 * FedAdam experiments also keep `fedadam-v<N>.state`, the server optimizer's
 * moments after version N, next to the latest checkpoint.
 */
@Injectable()
export class CheckpointFiles {
  /** Folder of a data dir that runs one experiment, as every data dir did before coordinators ran several. */
  sharedDir(dataDir: string): string {
    return join(dataDir, 'checkpoints');
  }

  experimentDir(dataDir: string, experiment: string): string {
    return join(dataDir, 'checkpoints', experiment);
  }

  pathIn(directory: string, version: number): string {
    return join(directory, `model-v${version}.cvnw`);
  }

  optimizerStatePathIn(directory: string, version: number): string {
    return join(directory, `fedadam-v${version}.state`);
  }

  /**
   * Returns the experiment that owns the shared checkpoint folder of `dataDir`,
   * or null when no experiment has claimed it.
   */
  async sharedDirOwner(dataDir: string): Promise<string | null> {
    let text: string;
    try {
      text = await readFile(join(this.sharedDir(dataDir), OWNER_FILE), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
    const owner = (JSON.parse(text) as { experiment?: unknown }).experiment;
    if (typeof owner !== 'string') throw new Error(`${join(this.sharedDir(dataDir), OWNER_FILE)} has no string field "experiment"`);
    return owner;
  }

  /**
   * Records `experiment` as the owner of the shared checkpoint folder. File
   * names there carry only the version, so a second experiment would
   * overwrite the owner's files. The record is a file, not a database row,
   * because data dirs that share one PostgreSQL database each have their own folder.
   */
  async claimSharedDir(dataDir: string, experiment: string): Promise<void> {
    await this.writeAtomic(join(this.sharedDir(dataDir), OWNER_FILE), Buffer.from(`${JSON.stringify({ experiment })}\n`));
  }

  /**
   * Deletes the temporary files that a process killed inside `writeAtomic`
   * left in `directory`, and returns their names. Only names that this class
   * writes are removed; other files stay.
   * NOTE: a second coordinator writing into the same folder at that moment
   * would lose its temporary file, but two coordinators must never share a data dir.
   */
  async removeStaleTempFiles(directory: string): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(directory);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const stale = names.filter((name) => OWNED_TEMP_FILE.test(name)).sort();
    for (const name of stale) await rm(join(directory, name), { force: true });
    return stale;
  }

  /**
   * Writes `data` so that a reader sees either the old file or the whole new
   * one: write a temporary file, fsync it, rename it over the target, then
   * fsync the directory so the rename itself survives a crash.
   */
  async writeAtomic(path: string, data: Uint8Array): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    try {
      const file = await open(tmp, 'w');
      try {
        await file.writeFile(data);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(tmp, path);
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    }
    const directory = await open(dirname(path), 'r');
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  }

  async read(path: string): Promise<Buffer> {
    return readFile(path);
  }
}
