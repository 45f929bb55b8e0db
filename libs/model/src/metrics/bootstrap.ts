import { CLASSES, type CovnetClass } from '../covnet/classes';
import { seededRandom } from '../covnet/random';
import { rocAuc } from './roc-auc';

export interface AucInterval {
  /** AUC of the whole set. */
  auc: number;
  lower: number;
  upper: number;
  /** Central coverage of the interval, e.g. 0.95. */
  confidence: number;
  /** Resamples that contained both classes; only those enter the percentiles. */
  resamples: number;
  /** Resamples dropped because they drew one class only, whose AUC is undefined. */
  skipped: number;
}

export interface BootstrapOptions {
  /** Resamples drawn with replacement. Default 2000. */
  resamples?: number;
  /** Central coverage of the interval. Default 0.95. */
  confidence?: number;
  /** Seed of the resampling; the same seed gives the same interval. Default 0. */
  seed?: number;
}

/**
 * Draws the bootstrap resamples: `resamples` arrays of n indices in 0..n-1, drawn with
 * replacement from the seeded generator. Exported so that tests can recompute the
 * interval from the same resamples with another implementation.
 */
export function bootstrapIndices(n: number, resamples: number, seed: number): Uint32Array[] {
  const random = seededRandom(seed);
  return Array.from({ length: resamples }, () => {
    const indices = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      indices[i] = Math.floor(random() * n);
    }
    return indices;
  });
}

/** Linear-interpolated percentile of sorted values, as numpy.percentile computes by default. */
function percentile(sorted: number[], fraction: number): number {
  const position = fraction * (sorted.length - 1);
  const below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below] + (sorted[above] - sorted[below]) * (position - below);
}

/**
 * Computes a percentile bootstrap confidence interval for the ROC AUC: the exams are
 * resampled with replacement, the AUC of each resample is computed, and the interval
 * runs from the (1 - confidence) / 2 to the (1 + confidence) / 2 percentile.
 * @returns null when the whole set has one class only, because the AUC is then undefined.
 *   Resamples that draw one class only are skipped and counted in `skipped`; with few
 *   positives or negatives many are, and the interval is then less reliable.
 * @throws Error when the arrays differ in length, or on invalid options.
 */
export function bootstrapAucInterval(scores: number[], positives: boolean[], opts: BootstrapOptions = {}): AucInterval | null {
  const resamples = opts.resamples ?? 2000;
  const confidence = opts.confidence ?? 0.95;
  if (!Number.isInteger(resamples) || resamples < 1) {
    throw new Error(`bootstrapAucInterval: resamples must be a positive integer, got ${resamples}.`);
  }
  if (!(confidence > 0 && confidence < 1)) {
    throw new Error(`bootstrapAucInterval: confidence must be between 0 and 1, got ${confidence}.`);
  }
  const auc = rocAuc(scores, positives);
  if (auc === null) {
    return null;
  }

  const aucs: number[] = [];
  for (const indices of bootstrapIndices(scores.length, resamples, opts.seed ?? 0)) {
    const value = rocAuc(
      Array.from(indices, (i) => scores[i]),
      Array.from(indices, (i) => positives[i]),
    );
    if (value !== null) {
      aucs.push(value);
    }
  }
  if (aucs.length === 0) {
    return null;
  }
  aucs.sort((a, b) => a - b);
  return {
    auc,
    lower: percentile(aucs, (1 - confidence) / 2),
    upper: percentile(aucs, (1 + confidence) / 2),
    confidence,
    resamples: aucs.length,
    skipped: resamples - aucs.length,
  };
}

export type PerClassAucInterval = Record<CovnetClass, AucInterval | null>;

/**
 * Computes a bootstrap interval for each class's one-vs-rest AUC. Each class draws its
 * own resamples from the same seed, so a class's interval does not depend on the others.
 * @throws Error when probs and labels differ in length, or on invalid options.
 */
export function oneVsRestAucIntervals(probs: number[][], labels: number[], opts: BootstrapOptions = {}): PerClassAucInterval {
  if (probs.length !== labels.length) {
    throw new Error(`oneVsRestAucIntervals: ${probs.length} probability rows but ${labels.length} labels.`);
  }
  const result = {} as PerClassAucInterval;
  CLASSES.forEach((name, k) => {
    result[name] = bootstrapAucInterval(
      probs.map((row) => row[k]),
      labels.map((label) => label === k),
      opts,
    );
  });
  return result;
}
