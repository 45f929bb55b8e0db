import { Injectable } from '@nestjs/common';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * Checkpoint files on disk: `<data dir>/checkpoints/<experiment>/model-v<N>.cvnw`,
 * or `<data dir>/checkpoints/model-v<N>.cvnw` for a data dir of one experiment.
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
