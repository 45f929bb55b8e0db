import type { NamedTensor } from '@covnet/protocol';

/**
 * Returns the L2 distance between an update and the global model it was
 * trained from, over every tensor (batch-normalisation statistics included),
 * summed in float64.
 * @throws Error when a tensor of the update is missing from the global model or has another length.
 */
export function updateDistance(global: ReadonlyMap<string, Float32Array>, update: readonly NamedTensor[]): number {
  let squares = 0;
  for (const tensor of update) {
    const reference = global.get(tensor.name);
    if (!reference || reference.length !== tensor.data.length) {
      throw new Error(`tensor ${tensor.name} of the update does not match the global model`);
    }
    squares += squaredDistance(reference, tensor.data);
  }
  return Math.sqrt(squares);
}

function squaredDistance(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  const n = a.length;
  for (let i = 0; i < n; i++) {
    const d = b[i] - a[i];
    sum += d * d;
  }
  return sum;
}

/** Returns the median of `values`: the middle one, or the mean of the two middle ones. @throws Error for no values. */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const half = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[half] : (sorted[half - 1] + sorted[half]) / 2;
}

/** Bounds on an update's L2 distance from the global model; null turns a bound off. */
export interface UpdateNormLimits {
  /** Absolute bound, in the units of the weights. */
  maxUpdateNorm: number | null;
  /** Bound as a multiple of the median distance of the updates aggregated in the previous round. */
  maxUpdateNormRatio: number | null;
}

/**
 * Decides whether an update lies too far from the global model. The decision
 * is made when the update is committed, so that the site receives it in the
 * commit's acknowledgement and FedAvg can fold the update at once. That is why
 * the ratio refers to the previous round's median and not to the open round's,
 * which is known only once every update is in.
 * NOTE: the reference lives in memory, so the ratio is not checked in the
 * first round an experiment runs after the coordinator starts. An absolute
 * `maxUpdateNorm` covers that round.
 */
export class UpdateNormCheck {
  private referenceDistance: number | null = null;

  constructor(private readonly limits: UpdateNormLimits) {}

  /** Whether any bound is set; without one, distances need not be computed. */
  get enabled(): boolean {
    return this.limits.maxUpdateNorm !== null || this.limits.maxUpdateNormRatio !== null;
  }

  /** Median distance of the previous round's aggregated updates, or null before the first round. */
  get reference(): number | null {
    return this.referenceDistance;
  }

  /** Returns why an update at `distance` from the global model is rejected, or null when it is within bounds. */
  violation(distance: number): string | null {
    const { maxUpdateNorm, maxUpdateNormRatio } = this.limits;
    if (maxUpdateNorm !== null && distance > maxUpdateNorm) {
      return `its L2 distance from the global model is ${format(distance)}, above maxUpdateNorm ${format(maxUpdateNorm)}`;
    }
    const reference = this.referenceDistance;
    if (maxUpdateNormRatio !== null && reference !== null && distance > maxUpdateNormRatio * reference) {
      return (
        `its L2 distance from the global model is ${format(distance)}, ${format(distance / reference)} times ` +
        `the previous round's median ${format(reference)}, above maxUpdateNormRatio ${maxUpdateNormRatio}`
      );
    }
    return null;
  }

  /** Takes the median of the distances of the updates a round aggregated as the next round's reference. */
  roundAggregated(distances: readonly number[]): void {
    // A zero median would reject every update that moves at all.
    if (distances.length > 0 && median(distances) > 0) this.referenceDistance = median(distances);
  }
}

function format(value: number): string {
  return value.toPrecision(4);
}
