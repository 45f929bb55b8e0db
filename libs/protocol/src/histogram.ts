import { HISTOGRAM_BINS } from './messages';

/**
 * Counts scores in [0, 1] into `HISTOGRAM_BINS` equal bins, separately for
 * positive and negative exams. A score of exactly 1 falls in the last bin.
 * @throws RangeError when a score is outside [0, 1] or not a number.
 */
export function scoreHistograms(
  scores: readonly number[],
  positives: readonly boolean[],
  bins = HISTOGRAM_BINS,
): { positive: number[]; negative: number[] } {
  if (scores.length !== positives.length) {
    throw new RangeError(`${scores.length} scores but ${positives.length} labels`);
  }
  const positive = new Array<number>(bins).fill(0);
  const negative = new Array<number>(bins).fill(0);
  scores.forEach((score, i) => {
    if (!(score >= 0 && score <= 1)) throw new RangeError(`score ${score} at index ${i} is outside [0, 1]`);
    const bin = Math.min(bins - 1, Math.floor(score * bins));
    (positives[i] ? positive : negative)[bin] += 1;
  });
  return { positive, negative };
}

/**
 * ROC AUC from binned scores, as the Mann-Whitney statistic where a positive
 * and a negative in the same bin count one half. Exams are only known to the
 * bin, so the result can differ from the exact AUC by at most the share of
 * positive-negative pairs that fall in a shared bin.
 * Returns null when either class is empty: AUC is undefined there.
 */
export function aucFromHistograms(positive: readonly number[], negative: readonly number[]): number | null {
  if (positive.length !== negative.length) throw new RangeError('histograms differ in bin count');
  const totalPositive = positive.reduce((a, b) => a + b, 0);
  const totalNegative = negative.reduce((a, b) => a + b, 0);
  if (totalPositive === 0 || totalNegative === 0) return null;
  let negativesBelow = 0;
  let wins = 0;
  for (let bin = 0; bin < positive.length; bin++) {
    wins += positive[bin] * (negativesBelow + negative[bin] / 2);
    negativesBelow += negative[bin];
  }
  return wins / (totalPositive * totalNegative);
}

/** Adds histograms bin by bin. */
export function sumHistograms(histograms: readonly (readonly number[])[], bins = HISTOGRAM_BINS): number[] {
  const total = new Array<number>(bins).fill(0);
  for (const h of histograms) h.forEach((v, i) => (total[i] += v));
  return total;
}
