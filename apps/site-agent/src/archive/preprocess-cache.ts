import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelInput } from '@covnet/imaging';
import { log } from '../log';

// File layout: MAGIC, a uint32 (little endian) length of the JSON metadata, the metadata, zero
// padding to a multiple of 4 bytes, then slices x size x size float32 values (little endian).
const MAGIC = Buffer.from('COVNETIN', 'latin1');

// Temporary name of an entry while `put` writes it: `<key>.bin.<process id>.tmp`.
const TEMP_FILE = /^[0-9a-f]{64}\.bin\.(\d+)\.tmp$/;

type InputMetadata = Omit<ModelInput, 'data'>;

/**
 * Preprocessed exams on disk, one file per key, so that later runs of the agent read no
 * DICOM. Files are written to a temporary name and renamed, so a reader never sees half a
 * file. A file that cannot be read counts as a miss.
 * NOTE: nothing is evicted. An exam whose files change leaves its old entry behind, about
 * slices x size x size x 4 bytes, until the folder is deleted.
 */
export class PreprocessCache {
  constructor(readonly dir: string) {}

  /** Returns a key for the given parts (e.g. the exam's files, the input spec and the pipeline version). */
  static key(parts: unknown): string {
    return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
  }

  /** Returns the cached input for a key, or undefined when it is absent or unreadable. */
  async get(key: string): Promise<ModelInput | undefined> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.pathOf(key));
    } catch {
      return undefined;
    }
    try {
      return decode(bytes);
    } catch (error) {
      log.warn({ cacheFile: this.pathOf(key), error: (error as Error).message }, 'cached input unreadable; preprocessing again');
      return undefined;
    }
  }

  /** Stores the input under a key, atomically. */
  async put(key: string, input: ModelInput): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const path = this.pathOf(key);
    const temporary = `${path}.${process.pid}.tmp`;
    try {
      await writeFile(temporary, encode(input));
      await rename(temporary, path);
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    }
  }

  /**
   * Deletes the temporary files that an agent killed inside `put` left
   * behind, and returns their names. Agents on one machine may share the
   * folder, so a file whose process is still running stays.
   */
  async removeStaleTempFiles(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const stale = names.filter((name) => {
      const match = TEMP_FILE.exec(name);
      return match !== null && !isRunning(Number(match[1]));
    });
    for (const name of stale) await rm(join(this.dir, name), { force: true });
    return stale.sort();
  }

  private pathOf(key: string): string {
    return join(this.dir, `${key}.bin`);
  }
}

function encode(input: ModelInput): Buffer {
  const { data, ...metadata } = input;
  const json = Buffer.from(JSON.stringify(metadata), 'utf8');
  const headerLength = MAGIC.length + 4 + json.length;
  const padding = (4 - (headerLength % 4)) % 4;
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length);
  const values = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.concat([MAGIC, length, json, Buffer.alloc(padding), values]);
}

function decode(bytes: Buffer): ModelInput {
  if (!bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('missing COVNETIN magic');
  const jsonLength = bytes.readUInt32LE(MAGIC.length);
  const jsonStart = MAGIC.length + 4;
  const metadata = JSON.parse(bytes.subarray(jsonStart, jsonStart + jsonLength).toString('utf8')) as InputMetadata;
  const dataStart = jsonStart + jsonLength + ((4 - ((jsonStart + jsonLength) % 4)) % 4);
  const expected = metadata.slices * metadata.size * metadata.size;
  if ((bytes.length - dataStart) / 4 !== expected) throw new Error(`${bytes.length - dataStart} data bytes, expected ${expected * 4}`);
  // Copied out of the file buffer so that the values are aligned and own their memory.
  const data = new Float32Array(expected);
  new Uint8Array(data.buffer).set(bytes.subarray(dataStart));
  return { ...metadata, data };
}

/**
 * Returns whether a process with this id runs. NOTE: an id that the system
 * gave to a new process counts as running, so that file stays until a later start.
 */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
