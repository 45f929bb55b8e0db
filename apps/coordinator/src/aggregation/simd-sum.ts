import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { SHARED_MAX_PAGES, kernelModuleBytes } from './simd-kernel';

interface KernelExports {
  fold(sum: number, src: number, n: number, w: number): void;
  store(sum: number, src: number, n: number, w: number): void;
  divide(sum: number, dst: number, n: number, d: number): void;
}

// The WebAssembly API that Node provides. The project's TypeScript libraries
// (ES2022 and @types/node) declare only its types, not the global object.
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
  Memory: new (descriptor: { initial: number; maximum: number; shared: true }) => { buffer: SharedArrayBuffer };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

const PAGE_BYTES = 65_536;
/** Largest sum in float64 values: 8 bytes for the sum and 4 for staging per value fit in 2 GiB. */
export const SIMD_SUM_MAX_VALUES = Math.floor((SHARED_MAX_PAGES * PAGE_BYTES) / 12);
// Below this many values a second thread costs more than it saves.
const PARALLEL_MIN_VALUES = 1_000_000;
// Share of the values the worker folds. The main thread also copies the
// whole update into staging, so an even split would leave the worker waiting.
const WORKER_SHARE = 0.6;
// A fold of a ResNet-50 update takes well under a second. The timeout only
// guards against a worker that died, which would otherwise block the main thread.
const WORKER_TIMEOUT_MS = 60_000;

const enum Task {
  Idle = 0,
  Fold = 1,
  Store = 2,
  Divide = 3,
  Done = 4,
  Exit = 5,
}

// Plain JavaScript, run with `eval`, so that the worker needs no TypeScript loader.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, control } = workerData;
const kernel = new WebAssembly.Instance(module, { env: { memory } }).exports;
const state = new Int32Array(control, 0, 1);
const args = new Float64Array(control, 8, 4);
for (;;) {
  // Done stays set until the main thread has read the result, so it waits like Idle.
  let task = Atomics.load(state, 0);
  while (task === ${Task.Idle} || task === ${Task.Done}) {
    Atomics.wait(state, 0, task);
    task = Atomics.load(state, 0);
  }
  if (task === ${Task.Exit}) break;
  const run = task === ${Task.Fold} ? kernel.fold : task === ${Task.Store} ? kernel.store : kernel.divide;
  run(args[0], args[1], args[2], args[3]);
  Atomics.store(state, 0, ${Task.Done});
  Atomics.notify(state, 0);
}
`;

let compiled: object | null = null;

/**
 * A float64 sum of `length` values in shared WebAssembly memory, updated with
 * the SIMD kernels of simd-kernel.ts. Each update is first copied into a
 * float32 staging area of the same memory, because wasm code reads only its
 * own memory. With two or more cores and at least a million values, a worker
 * thread folds the upper part of the staged update while the main thread
 * folds the lower part.
 * NOTE: the memory is 12 bytes per value (282 MB for ResNet-50), 4 more than
 * the sum alone, and the worker shares the memory bandwidth with the main thread.
 * Call `close` to end the worker thread.
 */
export class SimdSum {
  private readonly kernel: KernelExports;
  /** First value the worker folds; `length` when there is no worker. */
  private readonly split: number;
  private readonly staging: Float32Array;
  private readonly stagingAddress: number;
  private readonly worker: Worker | null = null;
  private readonly state: Int32Array;
  private readonly args: Float64Array;
  private closed = false;

  /** @throws RangeError when `length` is above SIMD_SUM_MAX_VALUES. */
  constructor(
    readonly length: number,
    threads = Math.min(2, availableParallelism()),
  ) {
    if (length > SIMD_SUM_MAX_VALUES) throw new RangeError(`a SIMD sum takes at most ${SIMD_SUM_MAX_VALUES} values, not ${length}`);
    compiled ??= new wasm.Module(kernelModuleBytes(true));
    const parallel = threads >= 2 && length >= PARALLEL_MIN_VALUES;
    // A multiple of 4 keeps both parts aligned to the kernel's vectors.
    this.split = parallel ? Math.floor((length * (1 - WORKER_SHARE)) / 4) * 4 : length;
    this.stagingAddress = align16(length * 8);
    const pages = Math.max(1, Math.ceil((this.stagingAddress + length * 4) / PAGE_BYTES));
    const memory = new wasm.Memory({ initial: pages, maximum: pages, shared: true });
    this.kernel = new wasm.Instance(compiled, { env: { memory } }).exports as unknown as KernelExports;
    this.staging = new Float32Array(memory.buffer, this.stagingAddress, length);

    const control = new SharedArrayBuffer(8 + 4 * 8);
    this.state = new Int32Array(control, 0, 1);
    this.args = new Float64Array(control, 8, 4);
    if (parallel) {
      this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module: compiled, memory, control } });
      // The worker waits for tasks forever; it must not keep the process alive.
      this.worker.unref();
    }
  }

  /**
   * Adds `weight * data` to the sum, or with `overwrite` replaces the sum by
   * it, where `parts` are consecutive tensors that cover the whole sum.
   */
  addScaled(parts: readonly Float32Array[], weight: number, overwrite: boolean): void {
    this.checkOpen();
    const task = overwrite ? Task.Store : Task.Fold;
    // The worker's part is staged first, so that it starts while the main thread stages its own.
    if (this.worker) {
      this.stage(parts, this.split, this.length);
      this.startWorker(task, this.split, this.split, this.length - this.split, weight);
    }
    this.stage(parts, 0, this.split);
    const kernel = overwrite ? this.kernel.store : this.kernel.fold;
    kernel(0, this.stagingAddress, this.split, weight);
    this.waitForWorker();
  }

  /** Writes every value divided by `divisor` into `outs`, consecutive float32 tensors that cover the whole sum. */
  divideInto(outs: readonly Float32Array[], divisor: number): void {
    this.checkOpen();
    if (this.worker) this.startWorker(Task.Divide, this.split, this.split, this.length - this.split, divisor);
    this.kernel.divide(0, this.stagingAddress, this.split, divisor);
    this.waitForWorker();
    let position = 0;
    for (const out of outs) {
      out.set(this.staging.subarray(position, position + out.length));
      position += out.length;
    }
  }

  /** Ends the worker thread; the sum can no longer be used. */
  close(): void {
    this.closed = true;
    if (!this.worker) return;
    Atomics.store(this.state, 0, Task.Exit);
    Atomics.notify(this.state, 0);
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('the FedAvg sum was closed and can no longer be used');
  }

  /** Copies values `from` to `to` of the consecutive `parts` into staging, in bulk per tensor. */
  private stage(parts: readonly Float32Array[], from: number, to: number): void {
    let position = 0;
    for (const data of parts) {
      const start = Math.max(from, position);
      const end = Math.min(to, position + data.length);
      if (start < end) this.staging.set(data.subarray(start - position, end - position), start);
      position += data.length;
    }
  }

  /** Starts `task` in the worker on `count` values from sum index `sumIndex` and staging index `stagingIndex`. */
  private startWorker(task: Task, sumIndex: number, stagingIndex: number, count: number, scalar: number): void {
    this.args[0] = sumIndex * 8;
    this.args[1] = this.stagingAddress + stagingIndex * 4;
    this.args[2] = count;
    this.args[3] = scalar;
    Atomics.store(this.state, 0, task);
    Atomics.notify(this.state, 0);
  }

  private waitForWorker(): void {
    if (!this.worker) return;
    // Atomics.wait returns at once when the state is no longer `current`.
    for (;;) {
      const current = Atomics.load(this.state, 0);
      if (current === Task.Done) break;
      if (Atomics.wait(this.state, 0, current, WORKER_TIMEOUT_MS) === 'timed-out') {
        throw new Error(`FedAvg worker thread did not finish a task within ${WORKER_TIMEOUT_MS / 1000} s`);
      }
    }
    Atomics.store(this.state, 0, Task.Idle);
  }
}

function align16(bytes: number): number {
  return Math.ceil(bytes / 16) * 16;
}
