import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { CtSliceHeader } from '../dicom/ct-header';
import { DicomReadError, type DicomRejectCode } from '../dicom/errors';
import type { ReadLimits } from '../dicom/read-slice';
import type { ScannedFile } from './scan-index';

/** Headers of one file parsed by a worker, one per frame; its pixels stay with that worker. */
export interface ParsedFile {
  path: string;
  headers: CtSliceHeader[];
}

/** Destination of one frame's HU values: a float32 offset into the shared target. */
export interface FramePlacement {
  /** Index of the file in the batch's file list. */
  file: number;
  frame: number;
  /** Offset in float32 elements of the frame's first value. */
  at: number;
}

export type DecodeRequest =
  | { kind: 'scan'; id: number; path: string; limits: ReadLimits; headersOnly: boolean }
  | { kind: 'parse'; id: number; batch: number; files: string[]; first: number; limits: ReadLimits }
  | { kind: 'decode'; id: number; batch: number; target: SharedArrayBuffer; placements: FramePlacement[] }
  | { kind: 'release'; id: number; batch: number };

export type DecodeReply =
  | { id: number; ok: true; files?: ParsedFile[]; scanned?: ScannedFile }
  /** Sent when a worker starts on a file, which starts that file's time limit. */
  | { id: number; started: true; path: string }
  | {
      id: number;
      ok: false;
      error:
        | { kind: 'dicom'; code: DicomRejectCode; path: string; tag: string | undefined; reason: string }
        | { kind: 'other'; message: string };
    };

interface PendingRequest {
  worker: Worker;
  /** The scan request itself while it waits or runs; the other kinds are queued in the worker. */
  scan?: Extract<DecodeRequest, { kind: 'scan' }>;
  resolve: (reply: Extract<DecodeReply, { ok: true }>) => void;
  reject: (error: Error) => void;
  /** Time allowed for each file of the request, from the moment the worker starts on it. */
  timeoutMs: number;
  timer?: NodeJS.Timeout;
}

// Copies the two limits out of a caller's options object, whose other fields (callbacks, an
// index) cannot be sent to a worker.
function limitsOnly(limits: ReadLimits): ReadLimits {
  return { maxFileBytes: limits.maxFileBytes, timeoutMs: limits.timeoutMs };
}

// The same default as the in-thread reader's time limit per file.
const DEFAULT_TIMEOUT_MS = 60_000;

/** A series whose files are parsed on the pool's workers and whose pixels wait there to be decoded. */
export interface ParsedBatch {
  /** Files in the order given to parseFiles. */
  files: ParsedFile[];
  /**
   * Decodes every placed frame to HU straight into `target`, each on the worker that parsed its
   * file, and then frees the file bytes the workers kept. Frames not placed are dropped.
   * @throws DicomReadError for the first frame that cannot be decoded.
   */
  decodeInto(target: SharedArrayBuffer, placements: readonly FramePlacement[]): Promise<void>;
  /** Frees the file bytes the workers kept, without decoding. */
  release(): Promise<void>;
}

/**
 * Worker threads that read, parse and decode DICOM files in parallel, one per core by default.
 * Decoding a series is CPU-bound, and Node runs JavaScript on one core per thread, so a pool is
 * how ingest uses every core. A series goes through in two steps. First the workers parse their
 * share of the files and return the headers, and the caller orders the slices. Then the workers
 * decode the pixels straight into a SharedArrayBuffer at each slice's place in the volume, so
 * no pixel is copied between threads. Workers start on creation; close the pool when done.
 */
export class DecodePool {
  private readonly workers: Worker[];
  private readonly pending = new Map<number, PendingRequest>();
  // Scan requests wait here for an idle worker, so that one slow file delays only itself.
  private readonly scanQueue: { request: Extract<DecodeRequest, { kind: 'scan' }>; waiting: PendingRequest }[] = [];
  private readonly busy = new Set<Worker>();
  private nextId = 0;
  private nextBatch = 0;
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
      if ('started' in reply) {
        clearTimeout(waiting.timer);
        waiting.timer = setTimeout(() => this.stopStalledWorker(reply.id, reply.path), waiting.timeoutMs);
        return;
      }
      this.settle(reply.id);
      if (reply.ok) waiting.resolve(reply);
      else if (reply.error.kind === 'dicom') waiting.reject(new DicomReadError(reply.error.code, reply.error.path, reply.error.tag, reply.error.reason));
      else waiting.reject(new Error(reply.error.message));
    });
    // A worker that dies fails every request still waiting on it, rather than leaving it hanging.
    const failMine = (error: Error) => {
      for (const [id, waiting] of this.pending) {
        if (waiting.worker !== worker) continue;
        this.settle(id);
        waiting.reject(error);
      }
    };
    worker.on('error', failMine);
    worker.on('exit', (code) => {
      if (!this.closed) failMine(new Error(`DICOM decode worker exited with code ${code}`));
    });
    return worker;
  }

  // Forgets a finished request, frees its worker for the next queued scan and stops its timer.
  private settle(id: number): void {
    const waiting = this.pending.get(id);
    if (waiting === undefined) return;
    this.pending.delete(id);
    clearTimeout(waiting.timer);
    if (waiting.scan !== undefined) {
      this.busy.delete(waiting.worker);
      this.pumpScans();
    }
  }

  /**
   * Reads one file for a scan: its headers and, unless `headersOnly`, the HU statistics of each
   * frame. Unlike the in-thread reader, whose time limit is checked between steps, this one
   * stops the worker thread when reading and decoding the file take longer than
   * `limits.timeoutMs` (default 60,000 ms), so a codec that never returns cannot stall a scan.
   * The worker is replaced and the file is skipped with code timed-out.
   */
  scanFile(path: string, limits: ReadLimits = {}, headersOnly = false): Promise<ScannedFile> {
    if (this.closed) return Promise.reject(new Error('the decode pool is closed'));
    return new Promise((resolve, reject) => {
      const request = { kind: 'scan' as const, id: this.nextId++, path, limits: limitsOnly(limits), headersOnly };
      const timeoutMs = limits.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      const waiting: PendingRequest = { worker: undefined as unknown as Worker, scan: request, resolve: (reply) => resolve(reply.scanned!), reject, timeoutMs };
      this.scanQueue.push({ request, waiting });
      this.pumpScans();
    });
  }

  private pumpScans(): void {
    while (this.scanQueue.length > 0 && !this.closed) {
      const worker = this.workers.find((candidate) => !this.busy.has(candidate));
      if (worker === undefined) return;
      const { request, waiting } = this.scanQueue.shift()!;
      waiting.worker = worker;
      this.busy.add(worker);
      this.pending.set(request.id, waiting);
      worker.postMessage(request);
    }
  }

  // Terminates a worker stuck on one file and starts a replacement. The stalled request fails
  // with code timed-out, or skips the file when it is a scan. Scans queued on the worker go
  // back to the queue, and other requests queued on it fail.
  private stopStalledWorker(id: number, path: string): void {
    const stalledRequest = this.pending.get(id);
    if (stalledRequest === undefined) return;
    const stalled = stalledRequest.worker;
    // The replacement takes the stalled worker's place first, so no new request goes to the stalled one.
    this.workers[this.workers.indexOf(stalled)] = this.startWorker();
    this.busy.delete(stalled);
    const timedOut = new DicomReadError('timed-out', path, undefined, `reading and decoding took more than the limit of ${stalledRequest.timeoutMs} ms, so the decode thread was stopped`);

    for (const [pendingId, waiting] of [...this.pending]) {
      if (waiting.worker !== stalled) continue;
      this.pending.delete(pendingId);
      clearTimeout(waiting.timer);
      if (pendingId === id && waiting.scan !== undefined) {
        waiting.resolve({ id, ok: true, scanned: { skip: { code: 'timed-out', reason: timedOut.reason } } });
      } else if (pendingId === id) {
        waiting.reject(timedOut);
      } else if (waiting.scan !== undefined) {
        this.scanQueue.unshift({ request: waiting.scan, waiting });
      } else {
        waiting.reject(new Error(`the decode worker was stopped because ${path} exceeded the time limit`));
      }
    }
    this.pumpScans();
    void stalled.terminate();
  }

  private send(worker: Worker, request: DecodeRequest, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Extract<DecodeReply, { ok: true }>> {
    if (this.closed) return Promise.reject(new Error('the decode pool is closed'));
    // A worker replaced after a stall never replies again.
    if (!this.workers.includes(worker)) return Promise.reject(new Error('the decode worker that parsed this batch was stopped'));
    return new Promise((resolve, reject) => {
      this.pending.set(request.id, { worker, resolve, reject, timeoutMs });
      worker.postMessage(request);
    });
  }

  /**
   * Reads and parses `files`, split into contiguous shares across the workers, and returns
   * their headers in the order given. The workers keep each file's bytes until the batch is
   * decoded or released. As in scanFile, a worker that spends more than `limits.timeoutMs` on
   * one file is stopped, and the load fails with code timed-out.
   * NOTE: so the pool keeps the whole series' file bytes between the two steps, about half
   * the size of its float32 volume for uncompressed 16-bit files.
   * @throws DicomReadError for the first file that cannot be read, as readCtFile does; the
   *   other files of the batch are released.
   */
  async parseFiles(files: readonly string[], limits: ReadLimits = {}): Promise<ParsedBatch> {
    if (this.closed) throw new Error('the decode pool is closed');
    const batch = this.nextBatch++;
    const timeoutMs = limits.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const share = Math.ceil(files.length / this.size);
    const shares = this.workers
      .map((worker, k) => ({ worker, first: k * share, files: files.slice(k * share, (k + 1) * share) }))
      .filter((part) => part.files.length > 0);
    const owners = shares.flatMap(({ worker, files: part }) => part.map(() => worker));
    const release = async () => {
      await Promise.all(shares.map(({ worker }) => this.send(worker, { kind: 'release', id: this.nextId++, batch })));
    };

    const replies = await Promise.allSettled(
      shares.map(({ worker, first, files: part }) => this.send(worker, { kind: 'parse', id: this.nextId++, batch, files: part, first, limits: limitsOnly(limits) }, timeoutMs)),
    );
    const failed = replies.find((reply): reply is PromiseRejectedResult => reply.status === 'rejected');
    if (failed !== undefined) {
      await release().catch(() => undefined);
      throw failed.reason;
    }
    const parsed = replies.flatMap((reply) => (reply as PromiseFulfilledResult<Extract<DecodeReply, { ok: true }>>).value.files ?? []);

    return {
      files: parsed,
      decodeInto: async (target, placements) => {
        const byWorker = new Map<Worker, FramePlacement[]>(shares.map(({ worker }) => [worker, []]));
        for (const placement of placements) byWorker.get(owners[placement.file])!.push(placement);
        await Promise.all([...byWorker].map(([worker, mine]) => this.send(worker, { kind: 'decode', id: this.nextId++, batch, target, placements: mine }, timeoutMs)));
      },
      release,
    };
  }

  /** Stops the workers. Requests still waiting or running fail with "the decode pool is closed". */
  async close(): Promise<void> {
    this.closed = true;
    const closedError = new Error('the decode pool is closed');
    for (const { waiting } of this.scanQueue.splice(0)) waiting.reject(closedError);
    for (const [id, waiting] of [...this.pending]) {
      this.pending.delete(id);
      clearTimeout(waiting.timer);
      waiting.reject(closedError);
    }
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }
}
