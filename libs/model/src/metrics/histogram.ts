export interface ScoreHistogram {
  /** Count of positive exams per bin; bin i covers [i/bins, (i+1)/bins), the last bin includes 1. */
  positive: number[];
  negative: number[];
}

/**
 * Bins scores in [0, 1] per class, so sites can send counts instead of per-exam scores
 * and a coordinator can pool AUC with aucFromHistograms.
 * @throws Error on a score outside [0, 1] or NaN, mismatched lengths, or bins < 1.
 */
export function scoreHistogram(scores: number[], positives: boolean[], bins = 1000): ScoreHistogram {
  if (scores.length !== positives.length) {
    throw new Error(`scoreHistogram: ${scores.length} scores but ${positives.length} labels.`);
  }
  if (!Number.isInteger(bins) || bins < 1) {
    throw new Error(`scoreHistogram: bins must be a positive integer, got ${bins}.`);
  }
  const positive = new Array<number>(bins).fill(0);
  const negative = new Array<number>(bins).fill(0);
  scores.forEach((score, i) => {
    if (!(score >= 0 && score <= 1)) {
      throw new Error(`scoreHistogram: score ${score} at index ${i} is outside [0, 1].`);
    }
    const bin = Math.min(Math.floor(score * bins), bins - 1);
    (positives[i] ? positive : negative)[bin] += 1;
  });
  return { positive, negative };
}

/**
 * Mann-Whitney AUC from binned counts: a positive in a higher bin than a negative counts 1,
 * in the same bin 1/2. With the same bins this equals rocAuc on scores rounded down to bins,
 * and histograms from several sites can be summed bin by bin before the call.
 * @returns null when either histogram is empty.
 * @throws Error when the histograms differ in length.
 */
export function aucFromHistograms(positive: number[], negative: number[]): number | null {
  if (positive.length !== negative.length) {
    throw new Error(`aucFromHistograms: ${positive.length} positive bins but ${negative.length} negative bins.`);
  }
  const nPositive = positive.reduce((a, b) => a + b, 0);
  const nNegative = negative.reduce((a, b) => a + b, 0);
  if (nPositive === 0 || nNegative === 0) {
    return null;
  }
  let pairs = 0;
  let negativesBelow = 0;
  for (let bin = 0; bin < positive.length; bin++) {
    pairs += positive[bin] * (negativesBelow + negative[bin] / 2);
    negativesBelow += negative[bin];
  }
  return pairs / (nPositive * nNegative);
}

/** Bin-wise sum of histograms from several sites. */
export function sumHistograms(histograms: ScoreHistogram[]): ScoreHistogram {
  if (histograms.length === 0) {
    throw new Error('sumHistograms: no histograms given.');
  }
  const bins = histograms[0].positive.length;
  const total: ScoreHistogram = { positive: new Array<number>(bins).fill(0), negative: new Array<number>(bins).fill(0) };
  histograms.forEach((h, site) => {
    if (h.positive.length !== bins || h.negative.length !== bins) {
      throw new Error(`sumHistograms: histogram ${site} has ${h.positive.length}/${h.negative.length} bins, expected ${bins}.`);
    }
    for (let i = 0; i < bins; i++) {
      total.positive[i] += h.positive[i];
      total.negative[i] += h.negative[i];
    }
  });
  return total;
}
