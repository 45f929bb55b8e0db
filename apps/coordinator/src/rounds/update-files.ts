import { createHash, type Hash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ProtocolError, type PayloadRef } from '@covnet/protocol';
import { resolveStoredPath, toStoredPath } from '../persistence/stored-paths';

/**
 * Files of the updates of one experiment, under `<data dir>/updates/<experiment>/`:
 * `uploads/<upload id>.part` while chunks arrive, then
 * `round-<N>/<site>-<sha256>.cvnw` once the update is accepted. An accepted
 * update stays on disk until its round's checkpoint is recorded, so a
 * restarted coordinator can rebuild the round's FedAvg sum. The database
 * stores the path of an accepted update relative to the data dir.
 */
export class UpdateFiles {
  private readonly root: string;

  constructor(
    private readonly dataDir: string,
    experiment: string,
  ) {
    this.root = join(dataDir, 'updates', experiment);
  }

  /** Path of the accepted update of `site` in `round` with content hash `sha256`. */
  acceptedPath(round: number, site: string, sha256: string): string {
    return join(this.roundDir(round), `${site}-${sha256}.cvnw`);
  }

  /**
   * Starts the file of a new upload.
   * @throws ProtocolError `payload_too_large` or `invalid_message` when `ref` is unusable.
   */
  async startUpload(id: string, ref: PayloadRef, maxBytes: number): Promise<UploadFile> {
    checkRef(ref, maxBytes);
    const path = join(this.root, 'uploads', `${id}.part`);
    await mkdir(dirname(path), { recursive: true });
    return new UploadFile(path, ref, await open(path, 'w'));
  }

  /**
   * Moves a verified upload to its accepted path. The file was fsynced by
   * `UploadFile.finish`; the directory is fsynced here so that the rename
   * survives a crash before the update is acknowledged. Returns the path to
   * store, relative to the data dir.
   */
  async accept(upload: UploadFile, round: number, site: string): Promise<string> {
    const path = this.acceptedPath(round, site, upload.ref.sha256);
    await mkdir(dirname(path), { recursive: true });
    await rename(upload.path, path);
    await syncDirectory(dirname(path));
    return toStoredPath(this.dataDir, path);
  }

  /**
   * Reads an accepted update from its stored path and checks it against the SHA-256 recorded with it.
   * @throws StoredPathError when the stored path leads outside the data dir.
   */
  async readAccepted(stored: string, sha256: string): Promise<Buffer> {
    const path = resolveStoredPath(this.dataDir, stored, `stored update with SHA-256 ${sha256}`);
    const data = await readFile(path);
    const actual = createHash('sha256').update(data).digest('hex');
    if (actual !== sha256) throw new Error(`stored update ${path} has SHA-256 ${actual}, the database records ${sha256}`);
    return data;
  }

  /**
   * Returns the file of an accepted update from its stored path, for reading it back later.
   * @throws StoredPathError when the stored path leads outside the data dir.
   */
  acceptedFile(stored: string): string {
    return resolveStoredPath(this.dataDir, stored, 'stored update');
  }

  async removeAccepted(stored: string): Promise<void> {
    await rm(resolveStoredPath(this.dataDir, stored, 'stored update'), { force: true });
  }

  /** Deletes the accepted updates of `round`, once its checkpoint is recorded. */
  async removeRound(round: number): Promise<void> {
    await rm(this.roundDir(round), { recursive: true, force: true });
  }

  /** Deletes every unfinished upload, e.g. those a killed process left behind. */
  async removeUploads(): Promise<void> {
    await rm(join(this.root, 'uploads'), { recursive: true, force: true });
  }

  private roundDir(round: number): string {
    return join(this.root, `round-${round}`);
  }
}

/**
 * One upload written to disk chunk by chunk, so that the coordinator keeps no
 * update in memory while it arrives, however many sites upload at once.
 * Chunks arrive in order; one received twice (a retry after a lost
 * acknowledgement) is written once and ignored after that.
 */
export class UploadFile {
  private next = 0;
  private written = 0;
  private readonly hash: Hash = createHash('sha256');
  // Writes are chained so that the file receives chunks in index order even
  // when a chunk's message arrives before the previous write has finished.
  private writes: Promise<void> = Promise.resolve();
  private failure: Error | null = null;
  private closed = false;

  constructor(
    readonly path: string,
    readonly ref: PayloadRef,
    private readonly file: FileHandle,
  ) {}

  get nextIndex(): number {
    return this.next;
  }

  /** Whether a write failed, so that the upload must start again from chunk 0. */
  get failed(): boolean {
    return this.failure !== null;
  }

  /**
   * Appends chunk `index`; returns the next index expected once the chunk is written.
   * @throws ProtocolError `chunk_out_of_order` or `invalid_message` (wrong size).
   */
  async add(index: number, data: Uint8Array): Promise<number> {
    if (index < this.next) {
      await this.writes;
      return this.next;
    }
    if (index > this.next) throw new ProtocolError('chunk_out_of_order', `chunk ${index} arrived, expected chunk ${this.next}`);
    const expectedLength = Math.min(this.ref.chunkBytes, this.ref.byteLength - this.written);
    if (data.byteLength !== expectedLength && !(this.ref.byteLength === 0 && data.byteLength === 0)) {
      throw new ProtocolError('invalid_message', `chunk ${index} has ${data.byteLength} bytes, expected ${expectedLength}`);
    }
    // Position, hash and index advance before the write, so a concurrent
    // resend of the same chunk is recognised as a resend.
    const position = this.written;
    this.written += data.byteLength;
    this.next += 1;
    this.hash.update(data);
    const copy = Buffer.from(data);
    this.writes = this.writes.then(async () => {
      if (this.failure) return;
      try {
        await this.file.write(copy, 0, copy.byteLength, position);
      } catch (error) {
        this.failure = error as Error;
      }
    });
    await this.writes;
    if (this.failure) throw this.failure;
    return this.next;
  }

  /**
   * Waits for every write, checks completeness and the SHA-256, fsyncs and closes the file.
   * @throws ProtocolError `invalid_message` when chunks are missing, `checksum_mismatch` when the hash differs.
   */
  async finish(): Promise<void> {
    await this.writes;
    if (this.failure) throw this.failure;
    if (this.next !== this.ref.chunkCount) {
      throw new ProtocolError('invalid_message', `payload incomplete: ${this.next} of ${this.ref.chunkCount} chunks received`);
    }
    const actual = this.hash.digest('hex');
    if (actual !== this.ref.sha256) throw new ProtocolError('checksum_mismatch', `payload SHA-256 is ${actual}, announced ${this.ref.sha256}`);
    await this.file.sync();
    await this.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writes;
    await this.file.close();
  }

  /** Closes and deletes the file of an upload that will not be accepted. */
  async discard(): Promise<void> {
    await this.close();
    await rm(this.path, { force: true });
  }
}

function checkRef(ref: PayloadRef, maxBytes: number): void {
  if (ref.byteLength > maxBytes) {
    throw new ProtocolError('payload_too_large', `payload of ${ref.byteLength} bytes exceeds the limit of ${maxBytes}`);
  }
  const expectedChunks = Math.max(1, Math.ceil(ref.byteLength / ref.chunkBytes));
  if (expectedChunks !== ref.chunkCount) {
    throw new ProtocolError(
      'invalid_message',
      `chunkCount ${ref.chunkCount} does not match ${ref.byteLength} bytes in chunks of ${ref.chunkBytes} (expected ${expectedChunks})`,
    );
  }
}

async function syncDirectory(path: string): Promise<void> {
  const directory = await open(path, 'r');
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}
