import type { NamedTensor } from '@covnet/protocol';
import { SIMD_SUM_MAX_VALUES, SimdSum } from './simd-kernel';

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
 * FedAvg as a running weighted sum: each update is folded in as it arrives
 * and then dropped, so memory stays one accumulator however many sites report.
 * The sum is kept in float64 so that the result does not depend on arrival
 * order beyond the final rounding to float32. The sum of all tensors lives in
 * one WebAssembly memory and is folded with SIMD kernels (see simd-kernel.ts).
 * `reset` starts a new sum in the same memory. So a scheduler that keeps one
 * accumulator pays the page faults of that memory only in its first round.
 */
export class FedAvgAccumulator {
  private readonly offsets: number[];
  private readonly sum: SimdSum | Float64Array;
  private totalWeight = 0;
  private count = 0;

  constructor(private readonly layout: ModelLayout) {
    this.offsets = [];
    let length = 0;
    for (const entry of layout) {
      this.offsets.push(length);
      length += entry.shape.reduce((a, b) => a * b, 1);
    }
    // A model above 268 M parameters does not fit the kernel's 2 GiB of wasm
    // memory. It takes the scalar loop, which gives the same bits more slowly.
    this.sum = length <= SIMD_SUM_MAX_VALUES ? new SimdSum(length) : new Float64Array(length);
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
    const tensors = updateDataInLayout(this.layout, update, weight);
    // The first update overwrites what an earlier round left in the sum.
    const overwrite = this.count === 0;
    for (let k = 0; k < this.layout.length; k++) {
      const data = tensors[k];
      if (this.sum instanceof SimdSum) this.sum.addScaled(this.offsets[k], data, weight, overwrite);
      else addScaled(this.sum, this.offsets[k], data, weight, overwrite);
    }
    this.totalWeight += weight;
    this.count += 1;
  }

  /** Returns the weighted mean as float32 tensors in layout order. @throws Error when nothing was added. */
  result(): NamedTensor[] {
    if (this.count === 0) throw new Error('FedAvg has no update to average');
    return this.layout.map((entry, k) => {
      const out = new Float32Array(entry.shape.reduce((a, b) => a * b, 1));
      if (this.sum instanceof SimdSum) this.sum.divideInto(this.offsets[k], out, this.totalWeight);
      else divideInto(this.sum, this.offsets[k], out, this.totalWeight);
      return { name: entry.name, shape: [...entry.shape], data: out };
    });
  }

  /** Empties the sum for the next round, keeping its memory. */
  reset(): void {
    this.totalWeight = 0;
    this.count = 0;
  }
}

// Kept as small monomorphic functions so V8 compiles each inner loop once, tightly.
function addScaled(sum: Float64Array, offset: number, data: Float32Array, weight: number, overwrite: boolean): void {
  const n = data.length;
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
