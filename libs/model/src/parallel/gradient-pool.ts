import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { ExamInput, LabelledExam } from '../covnet/exam';
import type { WorkerMessage, WorkerRequest, WorkerSetup } from './messages';
import { concatenatedViews } from './shared-values';

export interface ShardResult {
  lossSum: number;
  /** Views of the worker's shared gradient buffer, valid only inside the `consume` callback of `gradients`. */
  gradients: Float32Array[];
  movingStatistics: Float32Array[];
}

interface WorkerShardResult {
  lossSum: number;
  gradients: SharedArrayBuffer;
  gradientSizes: number[];
  movingStatistics: Float32Array[];
}

export interface FeatureResult {
  features: Float32Array;
  channels: number;
}

interface PendingRequest {
  resolve: (result: WorkerShardResult | FeatureResult) => void;
  reject: (error: Error) => void;
}

/** How long a worker may take to load tfjs, the wasm binary and build its model. */
const START_TIMEOUT_MS = 120_000;

/**
 * Worker threads that each hold a wasm backend and a model replica and compute the
 * gradient of a share of a batch, so training uses one core per worker. tfjs 4.22 turns
 * wasm's own threads off under Node, so this is how wasm uses more than one core.
 *
 * Weights and gradients cross between threads through shared memory: the pool writes
 * the weights once into a buffer that every worker reads, and each worker writes its
 * gradients into a buffer of its own that the caller reads in place. Posting the
 * ResNet-50's 94 MB of weights to each worker instead cost a copy per worker on the
 * main thread while the workers waited. Because these buffers are reused, the pool
 * runs one request at a time.
 */
export class GradientWorkerPool {
  private nextId = 0;
  private readonly pending = new Map<number, PendingRequest>();
  private closed = false;
  private busy = false;
  private sharedWeights?: SharedArrayBuffer;
  /** The error of a worker that stopped while the pool was open. A stopped worker never replies to a request. */
  private lostWorker?: Error;

  private constructor(private readonly workers: Worker[]) {
    for (const worker of workers) {
      worker.on('message', (message: WorkerMessage) => this.onMessage(message));
      worker.on('error', (error) => {
        this.lostWorker ??= error;
        this.failAll(error);
      });
      worker.on('exit', (code) => {
        if (this.closed) return;
        const error = new Error(`gradient worker exited with code ${code}`);
        this.lostWorker ??= error;
        this.failAll(error);
      });
    }
  }

  get size(): number {
    return this.workers.length;
  }

  /** Whether every worker still runs, so that the pool can take requests. */
  get usable(): boolean {
    return !this.closed && this.lostWorker === undefined;
  }

  /**
   * Starts `count` workers, each building the model of `setup`, and waits until all are ready.
   * @throws Error when a worker fails to start or is not ready within START_TIMEOUT_MS.
   */
  static async start(count: number, setup: WorkerSetup): Promise<GradientWorkerPool> {
    if (!Number.isInteger(count) || count < 1) {
      throw new Error(`workers must be a positive integer, got ${count}.`);
    }
    const workers = Array.from({ length: count }, () => spawnWorker(setup));
    try {
      await Promise.all(workers.map((worker) => waitUntilReady(worker)));
    } catch (error) {
      await Promise.all(workers.map((worker) => worker.terminate()));
      throw error;
    }
    return new GradientWorkerPool(workers);
  }

  /**
   * Sends the weights and one share of exams to each worker and hands their results, in
   * share order, to `consume`, whose value this returns. The results' gradients are views
   * of the workers' buffers, which the next request overwrites, so `consume` must finish
   * with them before it returns. Shares beyond the pool size are rejected. Share i goes to
   * worker i, except that an empty share is not sent and has no result, so `consume` gets
   * one result per non-empty share.
   */
  async gradients<T>(weights: readonly Float32Array[], shares: LabelledExam[][], consume: (results: ShardResult[]) => T): Promise<T> {
    const release = this.claim(shares.length);
    try {
      const buffer = this.shareWeights(weights);
      const workerShares = shares.flatMap((exams, worker) => (exams.length > 0 ? [{ worker, exams }] : []));
      const replies = await Promise.all(
        workerShares.map(({ worker, exams }) => this.send(worker, { kind: 'gradients', id: this.nextId++, weights: buffer, exams }) as Promise<WorkerShardResult>),
      );
      return consume(
        replies.map((reply, i) => ({
          lossSum: reply.lossSum,
          gradients: concatenatedViews(reply.gradients, reply.gradientSizes, `gradient worker ${workerShares[i].worker}: its gradients`),
          movingStatistics: reply.movingStatistics,
        })),
      );
    } finally {
      release();
    }
  }

  /**
   * Computes the per-slice pooled features of one part of an exam's slices on each worker,
   * in inference mode, and returns them in part order.
   */
  async features(weights: readonly Float32Array[], parts: ExamInput[]): Promise<FeatureResult[]> {
    const release = this.claim(parts.length);
    try {
      const buffer = this.shareWeights(weights);
      return await Promise.all(parts.map((exam, i) => this.send(i, { kind: 'features', id: this.nextId++, weights: buffer, exam }) as Promise<FeatureResult>));
    } finally {
      release();
    }
  }

  /** Marks the pool busy until the returned function is called. */
  private claim(parts: number): () => void {
    this.assertOpen(parts);
    if (this.busy) {
      throw new Error('The gradient worker pool is busy with another request. Await that request before sending the next one.');
    }
    this.busy = true;
    return () => {
      this.busy = false;
    };
  }

  /** Copies the weights one after another into the buffer that every worker reads. */
  private shareWeights(weights: readonly Float32Array[]): SharedArrayBuffer {
    const bytes = weights.reduce((sum, w) => sum + w.length, 0) * Float32Array.BYTES_PER_ELEMENT;
    if (this.sharedWeights?.byteLength !== bytes) this.sharedWeights = new SharedArrayBuffer(bytes);
    const all = new Float32Array(this.sharedWeights);
    let offset = 0;
    for (const w of weights) {
      all.set(w, offset);
      offset += w.length;
    }
    return this.sharedWeights;
  }

  private assertOpen(parts: number): void {
    if (this.closed) {
      throw new Error('The gradient worker pool is closed.');
    }
    if (this.lostWorker !== undefined) {
      throw new Error(`The gradient worker pool lost a worker (${this.lostWorker.message}) and takes no more requests. Close it and start a new pool.`);
    }
    if (parts > this.workers.length) {
      throw new Error(`${parts} parts for ${this.workers.length} gradient workers.`);
    }
  }

  private send(worker: number, request: WorkerRequest): Promise<WorkerShardResult | FeatureResult> {
    return new Promise((resolve, reject) => {
      this.pending.set(request.id, { resolve, reject });
      this.workers[worker].postMessage(request);
    });
  }

  /** Stops every worker; pending requests are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    this.failAll(new Error('The gradient worker pool was closed.'));
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  private onMessage(message: WorkerMessage): void {
    if (message.type === 'gradients') {
      const request = this.pending.get(message.id);
      this.pending.delete(message.id);
      request?.resolve({
        lossSum: message.lossSum,
        gradients: message.gradients,
        gradientSizes: message.gradientSizes,
        movingStatistics: message.movingStatistics,
      });
    } else if (message.type === 'features') {
      const request = this.pending.get(message.id);
      this.pending.delete(message.id);
      request?.resolve({ features: message.features, channels: message.channels });
    } else if (message.type === 'failed') {
      const error = new Error(`gradient worker failed: ${message.message}`);
      error.stack = message.stack ?? error.stack;
      if (message.id !== undefined) {
        const request = this.pending.get(message.id);
        this.pending.delete(message.id);
        request?.reject(error);
      } else {
        this.failAll(error);
      }
    }
  }

  private failAll(error: Error): void {
    for (const request of this.pending.values()) {
      request.reject(error);
    }
    this.pending.clear();
  }
}

function spawnWorker(setup: WorkerSetup): Worker {
  // A .cjs entry registers tsx in the thread, then loads the TypeScript worker: Node 20
  // does not apply the parent's `--import tsx` to worker threads.
  return new Worker(path.join(__dirname, 'gradient-worker-entry.cjs'), { workerData: setup });
}

function waitUntilReady(worker: Worker): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gradient worker not ready after ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
    const cleanUp = () => {
      clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    const onMessage = (message: WorkerMessage) => {
      if (message.type === 'ready') {
        cleanUp();
        resolve();
      } else if (message.type === 'failed') {
        cleanUp();
        reject(new Error(`gradient worker failed to start: ${message.message}`));
      }
    };
    const onError = (error: Error) => {
      cleanUp();
      reject(error);
    };
    const onExit = (code: number) => {
      cleanUp();
      reject(new Error(`gradient worker exited with code ${code} before it was ready`));
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}
