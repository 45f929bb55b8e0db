import type { NamedTensor } from '@covnet/protocol';
import { updateDataInLayout, type ModelLayout } from './fedavg';

/**
 * Coordinate-wise robust estimates over a round's updates (Yin et al.,
 * "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates",
 * ICML 2018). Both are unweighted: every update counts once whatever its exam
 * count, so a site cannot gain weight by claiming more exams, and a weighted
 * median would let one large site decide every coordinate alone.
 */
export type RobustRule = { name: 'median' } | { name: 'trimmed-mean'; trimFraction: number };

/** Returns the number of values cut from each end of a coordinate's sorted values: floor(trimFraction * n). */
export function trimCount(trimFraction: number, n: number): number {
  return Math.floor(trimFraction * n);
}

/**
 * Keeps every update of a round and computes the coordinate-wise median or
 * trimmed mean when the round closes.
 * NOTE: memory grows by one model per accepted update (six ResNet-50 updates
 * are about 560 MB), unlike FedAvg's single running sum.
 */
export class RobustAggregator {
  private readonly kept: Float32Array[][] = [];
  private totalWeight = 0;

  /** @throws RangeError for a trim fraction outside [0, 0.5). */
  constructor(
    private readonly layout: ModelLayout,
    private readonly rule: RobustRule,
  ) {
    if (rule.name === 'trimmed-mean' && !(rule.trimFraction >= 0 && rule.trimFraction < 0.5)) {
      throw new RangeError(`trimFraction ${rule.trimFraction} is outside [0, 0.5)`);
    }
  }

  get updates(): number {
    return this.kept.length;
  }

  /** Sum of the weights added; reported in logs, not used by the estimate. */
  get weight(): number {
    return this.totalWeight;
  }

  /**
   * Keeps one update. The weight is recorded for the logs only.
   * @throws Error when the update's layout differs or the weight is not a positive number.
   */
  add(update: NamedTensor[], weight: number): void {
    this.kept.push(updateDataInLayout(this.layout, update, weight));
    this.totalWeight += weight;
  }

  /** Returns the estimate as float32 tensors in layout order. @throws Error when nothing was added. */
  result(): NamedTensor[] {
    const n = this.kept.length;
    if (n === 0) throw new Error(`${this.rule.name} has no update to aggregate`);
    const cut = this.rule.name === 'trimmed-mean' ? trimCount(this.rule.trimFraction, n) : 0;
    const values = new Float64Array(n);
    return this.layout.map((entry, k) => {
      const tensors = this.kept.map((update) => update[k]);
      const out = new Float32Array(tensors[0].length);
      for (let i = 0; i < out.length; i++) {
        for (let u = 0; u < n; u++) values[u] = tensors[u][i];
        sortSmall(values);
        out[i] = this.rule.name === 'median' ? middle(values) : meanBetween(values, cut, n - cut);
      }
      return { name: entry.name, shape: [...entry.shape], data: out };
    });
  }

  /** Drops the kept updates for the next round. */
  reset(): void {
    this.kept.length = 0;
    this.totalWeight = 0;
  }
}

/** Returns the median of sorted values: the middle one, or the mean of the two middle ones for an even count. */
function middle(sorted: Float64Array): number {
  const n = sorted.length;
  const half = n >> 1;
  return n % 2 === 1 ? sorted[half] : (sorted[half - 1] + sorted[half]) / 2;
}

function meanBetween(sorted: Float64Array, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += sorted[i];
  return sum / (to - from);
}

// Insertion sort: a round has a handful of updates, where it beats
// TypedArray.prototype.sort and allocates nothing.
function sortSmall(values: Float64Array): void {
  for (let i = 1; i < values.length; i++) {
    const value = values[i];
    let j = i - 1;
    while (j >= 0 && values[j] > value) {
      values[j + 1] = values[j];
      j--;
    }
    values[j + 1] = value;
  }
}
