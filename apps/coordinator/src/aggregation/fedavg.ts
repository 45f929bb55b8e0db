import type { NamedTensor } from '@covnet/protocol';

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
 * order beyond the final rounding to float32.
 */
export class FedAvgAccumulator {
  private readonly sums: Float64Array[];
  private totalWeight = 0;
  private count = 0;

  constructor(private readonly layout: ModelLayout) {
    this.sums = layout.map((t) => new Float64Array(t.shape.reduce((a, b) => a * b, 1)));
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
    if (!(weight > 0) || !Number.isFinite(weight)) throw new Error(`update weight ${weight} is not a positive number`);
    const mismatch = layoutMismatch(this.layout, update);
    if (mismatch) throw new Error(mismatch);
    const byName = new Map(update.map((t) => [t.name, t.data]));
    for (let k = 0; k < this.layout.length; k++) {
      addScaled(this.sums[k], byName.get(this.layout[k].name)!, weight);
    }
    this.totalWeight += weight;
    this.count += 1;
  }

  /** Returns the weighted mean as float32 tensors in layout order. @throws Error when nothing was added. */
  result(): NamedTensor[] {
    if (this.count === 0) throw new Error('FedAvg has no update to average');
    return this.layout.map((entry, k) => ({
      name: entry.name,
      shape: [...entry.shape],
      data: divided(this.sums[k], this.totalWeight),
    }));
  }
}

// Kept as small monomorphic functions so V8 compiles each inner loop once, tightly.
function addScaled(sum: Float64Array, data: Float32Array, weight: number): void {
  const n = sum.length;
  for (let i = 0; i < n; i++) sum[i] += weight * data[i];
}

function divided(sum: Float64Array, divisor: number): Float32Array {
  const out = new Float32Array(sum.length);
  const n = sum.length;
  for (let i = 0; i < n; i++) out[i] = sum[i] / divisor;
  return out;
}

/** FedAvg of a list of updates with their weights; see `FedAvgAccumulator`. */
export function fedAvg(layout: ModelLayout, updates: { tensors: NamedTensor[]; weight: number }[]): NamedTensor[] {
  const accumulator = new FedAvgAccumulator(layout);
  for (const update of updates) accumulator.add(update.tensors, update.weight);
  return accumulator.result();
}
