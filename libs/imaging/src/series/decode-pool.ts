import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { CtSliceHeader } from '../dicom/ct-header';
import { DicomReadError, type DicomRejectCode } from '../dicom/errors';
import type { ReadLimits } from '../dicom/read-slice';

/** One file read and decoded by a worker: a header and an HU frame per frame. */
export interface DecodedFile {
  path: string;
  headers: CtSliceHeader[];
  frames: Float32Array[];
}

export interface DecodeRequest {
  id: number;
  files: string[];
  limits: ReadLimits;
}

export type DecodeReply =
  | { id: number; ok: true; files: DecodedFile[] }
  | {
      id: number;
      ok: false;
      error:
        | { kind: 'dicom'; code: DicomRejectCode; path: string; tag: string | undefined; reason: string }
        | { kind: 'other'; message: string };
    };

/**
 * Worker threads that read and decode DICOM files in parallel, one per core by default.
 * Decoding a series is CPU-bound, and Node runs JavaScript on one core per thread, so a
 * pool is how ingest uses every core. Workers start on creation; close the pool when done.
 */
export class DecodePool {
  private readonly workers: Worker[];
  private readonly pending = new Map<number, { resolve: (files: DecodedFile[]) => void; reject: (error: Error) => void }>();
  private nextId = 0;
  private closed = false;

  constructor(readonly size = availableParallelism()) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`decode pool size must be a positive integer, got ${size}`);
    this.workers = Array.from({ length: size }, () => this.startWorker());
  }

  private startWorker(): Worker {
    const worker = new Worker(join(__dirname, 'decode-worker-entry.cjs'));
    worker.on('message', (reply: DecodeReply) => {
      const waiting = this.pending.get(reply.id);
      if (!waiting) return;
      this.pending.delete(reply.id);
      if (reply.ok) waiting.resolve(reply.files);
      else if (reply.error.kind === 'dicom') waiting.reject(new DicomReadError(reply.error.code, reply.error.path, reply.error.tag, reply.error.reason));
      else waiting.reject(new Error(reply.error.message));
    });
    // A worker that dies fails every request still waiting, rather than leaving it hanging.
    const failAll = (error: Error) => {
      for (const [id, waiting] of this.pending) {
        this.pending.delete(id);
        waiting.reject(error);
      }
    };
    worker.on('error', failAll);
    worker.on('exit', (code) => {
      if (!this.closed) failAll(new Error(`DICOM decode worker exited with code ${code}`));
    });
    return worker;
  }

  /**
   * Reads and decodes `files`, split into contiguous shares across the workers, and returns
   * them in the order given.
   * @throws DicomReadError for the first file that cannot be read, as readCtFile does.
   */
  async decodeFiles(files: readonly string[], limits: ReadLimits = {}): Promise<DecodedFile[]> {
    if (this.closed) throw new Error('the decode pool is closed');
    const share = Math.ceil(files.length / this.size);
    const parts = this.workers
      .map((worker, k) => ({ worker, files: files.slice(k * share, (k + 1) * share) }))
      .filter((part) => part.files.length > 0)
      .map(({ worker, files: part }) => {
        const id = this.nextId++;
        return new Promise<DecodedFile[]>((resolve, reject) => {
          this.pending.set(id, { resolve, reject });
          worker.postMessage({ id, files: part, limits } satisfies DecodeRequest);
        });
      });
    return (await Promise.all(parts)).flat();
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }
}
