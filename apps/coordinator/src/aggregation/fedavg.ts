import type { NamedTensor } from '@covnet/protocol';
import { loadNativeFold, nativeSources, type FoldKernel, type NativeFold, type NativeReadable } from './native-fold';
import { BATCH_SLOTS, SIMD_SUM_MAX_VALUES, SimdSum, TILE_VALUES } from './simd-kernel';

/** Reference layout of the global model: name -> shape, in the global model's order. */
export type ModelLayout = { name: string; shape: number[] }[];

/**
 * Explains why an update does not fit the global model's layout, or returns
 * null when it fits. Names and shapes must match exactly; order is free.
 */
export function layoutMismatch(layout: ModelLayout, update: NamedTensor[]): string | null {
  if (update.length !== layout.length) {
    return `update has ${update.length} tensors, expected ${layout.length}`;
  }
  const byName = new Map(update.map((t) => [t.name, t]));
  for (const expected of layout) {
    const actual = byName.get(expected.name);
    if (!actual) return `tensor ${expected.name} is missing`;
    if (actual.shape.length !== expected.shape.length || actual.shape.some((d, i) => d !== expected.shape[i])) {
      return `tensor ${expected.name} has shape [${actual.shape}], expected [${expected.shape}]`;
    }
  }
  return null;
}

/**
 * Returns an update's tensor data in layout order, after checking its weight and layout.
 * @throws Error when the layout differs or the weight is not a positive number.
 */
export function updateDataInLayout(layout: ModelLayout, update: NamedTensor[], weight: number): Float32Array[] {
  if (!(weight > 0) || !Number.isFinite(weight)) throw new Error(`update weight ${weight} is not a positive number`);
  const mismatch = layoutMismatch(layout, update);
  if (mismatch) throw new Error(mismatch);
  const byName = new Map(update.map((t) => [t.name, t.data]));
  return layout.map((entry) => byName.get(entry.name)!);
}

/** Returns the name of the first tensor holding NaN or an infinite value, or null. */
export function firstNonFinite(update: NamedTensor[]): string | null {
  for (const tensor of update) {
    const data = tensor.data;
    for (let i = 0; i < data.length; i++) {
      // x - x is NaN for NaN and for both infinities.
      if (data[i] - data[i] !== 0) return tensor.name;
    }
  }
  return null;
}

/**
 * One update as the batched fold reads it: its values in layout order (the
 * global model's tensors one after another), one tile at a time.
 */
export interface TiledUpdate extends NativeReadable {
  /** Weight of the update in the mean: the site's number of training exams. */
  readonly weight: number;
  /** Writes the update's values [start, start + count) in layout order into target[0, count). */
  readTile(start: number, count: number, target: Float32Array): void;
  /** Called once the batch holding this update is folded or has failed; frees what `readTile` opened. */
  release?(): void;
}

/**
 * Offsets of a layout's tensors in the sequence of all its values, and a
 * walk over the tensors that a range of that sequence covers.
 */
export class LayoutRanges {
  /** First value of each tensor, followed by the total number of values. */
  readonly starts: number[];

  constructor(layout: ModelLayout) {
    this.starts = [0];
    for (const entry of layout) this.starts.push(this.starts[this.starts.length - 1] + entry.shape.reduce((a, b) => a * b, 1));
  }

  get length(): number {
    return this.starts[this.starts.length - 1];
  }

  /**
   * Calls `visit(k, from, to, at)` for each tensor k that the values
   * [start, start + count) cover: its values [from, to) go to position `at` of the range.
   */
  forEachPiece(start: number, count: number, visit: (k: number, from: number, to: number, at: number) => void): void {
    const end = start + count;
    let k = this.tensorAt(start);
    for (let position = start; position < end; k++) {
      const tensorEnd = Math.min(end, this.starts[k + 1]);
      if (tensorEnd > position) visit(k, position - this.starts[k], tensorEnd - this.starts[k], position - start);
      position = Math.max(position, tensorEnd);
    }
  }

  /** Returns the index of the tensor that contains value `position` (empty tensors are skipped). */
  private tensorAt(position: number): number {
    let low = 0;
    let high = this.starts.length - 2;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.starts[middle] <= position) low = middle;
      else high = middle - 1;
    }
    return low;
  }
}

/**
 * Returns an update held in memory as a TiledUpdate, after checking its weight and layout.
 * @throws Error when the layout differs or the weight is not a positive number.
 */
export function tiledTensors(layout: ModelLayout, update: NamedTensor[], weight: number): TiledUpdate {
  const tensors = updateDataInLayout(layout, update, weight);
  const ranges = new LayoutRanges(layout);
  return {
    weight,
    readTile(start, count, target) {
      ranges.forEachPiece(start, count, (k, from, to, at) => target.set(tensors[k].subarray(from, to), at));
    },
    nativeSource: () => ({ weight, tensors }),
  };
}

/**
 * FedAvg as a running weighted sum: each update is folded in and then
 * dropped, so memory stays one accumulator however many sites report.
 * The sum is kept in float64 so that the result does not depend on arrival
 * order beyond the final rounding to float32. The sum of all tensors lives in
 * one WebAssembly memory. Where @covnet/native-kernels loads, the native
 * AVX2 fold adds updates to it on up to two threads and reads stored updates
 * from their files itself (see native-fold.ts). Otherwise, and for updates
 * that only `readTile` can read, the wasm SIMD kernels do (see simd-kernel.ts).
 * All kernels perform the same IEEE operations per value, so they give the same bits.
 * `reset` starts a new sum in the same memory. So a scheduler that keeps one
 * accumulator pays the page faults of that memory only in its first round.
 *
 * `addBatch` folds several waiting updates together, tile by tile: for each
 * stretch of TILE_VALUES values it adds every update of the batch in order
 * before moving on. Each value thus goes through the same IEEE operations in the same
 * order as with one `add` per update, so the sum is the same bit for bit. The
 * float64 sum, though, crosses main memory once per batch instead of once per update.
 */
export class FedAvgAccumulator {
  private readonly ranges: LayoutRanges;
  private readonly sum: SimdSum | Float64Array;
  // The sum as the native fold reads it, and the tensor starts it takes.
  private readonly sumValues: Float64Array;
  private readonly starts: Float64Array;
  private readonly native: NativeFold | null;
  /**
   * Kernel of this accumulator. With `native`, a batch with an update that offers no
   * `nativeSource` is folded by the wasm kernel, or by the scalar loop for a model too large for wasm memory.
   */
  readonly kernel: FoldKernel;
  // Tile of the scalar path, which folds the updates one after another per tile.
  private scalarTile: Float32Array | null = null;
  private totalWeight = 0;
  private count = 0;
  // Set by resultAfter, whose last batch is divided out and never added to the sum.
  private consumed = false;

  /**
   * @param options.kernel the kernel to fold with, e.g. to compare them. Default: `native`
   * where @covnet/native-kernels loads, else `wasm`.
   * @throws Error when `native` is asked for but the native kernels cannot be loaded.
   */
  constructor(
    private readonly layout: ModelLayout,
    options: { kernel?: FoldKernel } = {},
  ) {
    this.ranges = new LayoutRanges(layout);
    const length = this.ranges.length;
    const native = loadNativeFold();
    const kernel = options.kernel ?? (native.fold !== null ? 'native' : 'wasm');
    if (kernel === 'native' && native.fold === null) throw new Error(`the native FedAvg fold is unavailable: ${native.reason}`);
    this.native = kernel === 'native' ? native.fold : null;
    // A model above 268 M parameters does not fit the wasm kernel's 2 GiB of
    // memory. It takes the scalar loop, which gives the same bits more slowly.
    const wasmFits = length <= SIMD_SUM_MAX_VALUES;
    this.sum = kernel !== 'scalar' && wasmFits ? new SimdSum(length) : new Float64Array(length);
    this.kernel = kernel === 'wasm' && !wasmFits ? 'scalar' : kernel;
    this.sumValues = this.sum instanceof SimdSum ? this.sum.values : this.sum;
    this.starts = Float64Array.from(this.ranges.starts);
  }

  get updates(): number {
    return this.count;
  }

  get weight(): number {
    return this.totalWeight;
  }

  /**
   * Adds one update with its weight (the site's number of training exams).
   * @throws Error when the update's layout differs or the weight is not a positive number.
   * Callers validate first (see `layoutMismatch`); this check guards the sum itself.
   */
  add(update: NamedTensor[], weight: number): void {
    this.addBatch([tiledTensors(this.layout, update, weight)]);
  }

  /**
   * Adds the updates in list order, BATCH_SLOTS at a time, with the same
   * result bit for bit as one `add` per update in that order.
   * @throws Error when a weight is not a positive number, or when a stored update cannot be
   * read (from `readTile`, `nativeSource` or the native fold). After a read error the sum
   * contains part of a batch, so the caller must `reset` and fold again.
   */
  addBatch(updates: readonly TiledUpdate[]): void {
    this.checkNotConsumed();
    checkWeights(updates);
    for (let first = 0; first < updates.length; first += BATCH_SLOTS) {
      const batch = updates.slice(first, first + BATCH_SLOTS);
      try {
        const sources = this.native === null ? null : nativeSources(batch);
        if (sources !== null) this.native!.kernels.fedAvgFold(this.sumValues, this.starts, sources, this.count === 0, 1, null, this.native!.threads);
        else if (this.sum instanceof SimdSum) foldSimd(this.sum, batch, this.count === 0);
        else this.foldScalar(this.sum, batch);
      } finally {
        for (const update of batch) update.release?.();
      }
      for (const update of batch) this.totalWeight += update.weight;
      this.count += batch.length;
    }
  }

  /** Returns the weighted mean as float32 tensors in layout order. @throws Error when nothing was added. */
  result(): NamedTensor[] {
    this.checkNotConsumed();
    if (this.count === 0) throw new Error('FedAvg has no update to average');
    const tensors = this.emptyResult();
    if (this.native !== null) {
      this.native.kernels.fedAvgFold(this.sumValues, this.starts, [], false, this.totalWeight, tensors.map((t) => t.data), this.native.threads);
      return tensors;
    }
    tensors.forEach((tensor, k) => {
      if (this.sum instanceof SimdSum) this.sum.divideInto(this.ranges.starts[k], tensor.data, this.totalWeight);
      else divideInto(this.sum, this.ranges.starts[k], tensor.data, this.totalWeight);
    });
    return tensors;
  }

  /**
   * Adds `updates` and returns the weighted mean, the same bit for bit as
   * `addBatch(updates)` followed by `result()`. The last batch of up to
   * BATCH_SLOTS updates is divided while it is folded, so its sums never go
   * back to memory and no separate division pass reads the sum. The sum is
   * then incomplete, so only `reset` may follow.
   * @throws Error as `addBatch` and `result` do.
   */
  resultAfter(updates: readonly TiledUpdate[]): NamedTensor[] {
    if ((this.native === null && !(this.sum instanceof SimdSum)) || updates.length === 0) {
      this.addBatch(updates);
      return this.result();
    }
    this.checkNotConsumed();
    checkWeights(updates);
    const lastBatch = updates.length - ((updates.length - 1) % BATCH_SLOTS) - 1;
    this.addBatch(updates.slice(0, lastBatch));

    const batch = updates.slice(lastBatch);
    let total = this.totalWeight;
    for (const update of batch) total += update.weight;
    const tensors = this.emptyResult();

    try {
      const sources = this.native === null ? null : nativeSources(batch);
      if (sources !== null) {
        this.native!.kernels.fedAvgFold(this.sumValues, this.starts, sources, this.count === 0, total, tensors.map((t) => t.data), this.native!.threads);
      } else if (this.sum instanceof SimdSum) {
        foldSimdDivided(this.sum, batch, this.count === 0, total, this.ranges, tensors);
      } else {
        // A model too large for wasm memory, with updates that only readTile can read.
        this.foldScalar(this.sum, batch);
        this.native!.kernels.fedAvgFold(this.sumValues, this.starts, [], false, total, tensors.map((t) => t.data), this.native!.threads);
      }
    } finally {
      for (const update of batch) update.release?.();
    }

    this.consumed = true;
    this.totalWeight = total;
    this.count += batch.length;
    return tensors;
  }

  /** Empties the sum for the next round, keeping its memory. */
  reset(): void {
    this.totalWeight = 0;
    this.count = 0;
    this.consumed = false;
  }

  /**
   * Allocates the result tensors without zeroing them, which saved 2 to 5 ms
   * of the main thread's time for the 320 tensors of the bench's layout. Every
   * caller writes every value before it returns the tensors and drops them
   * when the fold throws, so no stale memory reaches a caller.
   */
  private emptyResult(): NamedTensor[] {
    return this.layout.map((entry, k) => ({
      name: entry.name,
      shape: [...entry.shape],
      data: uninitializedFloats(this.ranges.starts[k + 1] - this.ranges.starts[k]),
    }));
  }

  private checkNotConsumed(): void {
    if (this.consumed) throw new Error('the FedAvg sum was divided out by resultAfter; reset it before adding or dividing again');
  }

  private foldScalar(sum: Float64Array, batch: readonly TiledUpdate[]): void {
    const tile = (this.scalarTile ??= new Float32Array(TILE_VALUES));
    // The first update overwrites what an earlier round left in the sum.
    const overwrite = this.count === 0;
    for (let start = 0; start < sum.length; start += TILE_VALUES) {
      const count = Math.min(TILE_VALUES, sum.length - start);
      batch.forEach((update, j) => {
        update.readTile(start, count, tile);
        addScaled(sum, start, tile, count, update.weight, overwrite && j === 0);
      });
    }
  }
}

/** Folds up to BATCH_SLOTS updates into `sum` tile by tile; `overwrite` starts the sum from zero. */
function foldSimd(sum: SimdSum, batch: readonly TiledUpdate[], overwrite: boolean): void {
  sum.setWeights(batch.map((update) => update.weight));
  for (let start = 0; start < sum.length; start += TILE_VALUES) {
    const count = Math.min(TILE_VALUES, sum.length - start);
    for (let slot = 0; slot < batch.length; slot++) batch[slot].readTile(start, count, sum.tile(slot));
    sum.foldTiles(start, count, batch.length, overwrite);
  }
}

/**
 * Folds up to BATCH_SLOTS updates tile by tile as `foldSimd` does, but writes
 * each tile's sums divided by `divisor` into `out` instead of into the sum.
 */
function foldSimdDivided(sum: SimdSum, batch: readonly TiledUpdate[], overwrite: boolean, divisor: number, ranges: LayoutRanges, out: NamedTensor[]): void {
  sum.setWeights(batch.map((update) => update.weight));
  const quotients = sum.quotientTile;
  for (let start = 0; start < sum.length; start += TILE_VALUES) {
    const count = Math.min(TILE_VALUES, sum.length - start);
    for (let slot = 0; slot < batch.length; slot++) batch[slot].readTile(start, count, sum.tile(slot));
    sum.foldTilesDivided(start, count, batch.length, overwrite, divisor);
    ranges.forEachPiece(start, count, (k, from, to, at) => out[k].data.set(quotients.subarray(at, at + to - from), from));
  }
}

/** Returns a Float32Array of `length` values with its own, unzeroed memory (not Node's shared Buffer pool). */
function uninitializedFloats(length: number): Float32Array {
  const bytes = Buffer.allocUnsafeSlow(length * 4);
  return new Float32Array(bytes.buffer, bytes.byteOffset, length);
}

function checkWeights(updates: readonly TiledUpdate[]): void {
  for (const update of updates) {
    if (!(update.weight > 0) || !Number.isFinite(update.weight)) throw new Error(`update weight ${update.weight} is not a positive number`);
  }
}

// Kept as small monomorphic functions so V8 compiles each inner loop once, tightly.
function addScaled(sum: Float64Array, offset: number, data: Float32Array, n: number, weight: number, overwrite: boolean): void {
  if (overwrite) for (let i = 0; i < n; i++) sum[offset + i] = 0 + weight * data[i];
  else for (let i = 0; i < n; i++) sum[offset + i] += weight * data[i];
}

function divideInto(sum: Float64Array, offset: number, out: Float32Array, divisor: number): void {
  const n = out.length;
  for (let i = 0; i < n; i++) out[i] = sum[offset + i] / divisor;
}

/** FedAvg of a list of updates with their weights; see `FedAvgAccumulator`. */
export function fedAvg(layout: ModelLayout, updates: { tensors: NamedTensor[]; weight: number }[]): NamedTensor[] {
  const accumulator = new FedAvgAccumulator(layout);
  for (const update of updates) accumulator.add(update.tensors, update.weight);
  return accumulator.result();
}
