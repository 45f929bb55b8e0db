import { CLASSES, type CovnetClass } from '../covnet/classes';

/**
 * ROC AUC as the Mann-Whitney U statistic: the probability that a random positive scores
 * above a random negative, a tie counting 1/2. Computed by ranking, O(n log n).
 * @returns null when only one class is present, because the AUC is then undefined.
 * @throws Error when the arrays differ in length or a score is NaN.
 */
export function rocAuc(scores: number[], positives: boolean[]): number | null {
  if (scores.length !== positives.length) {
    throw new Error(`rocAuc: ${scores.length} scores but ${positives.length} labels.`);
  }
  if (scores.some((s) => Number.isNaN(s))) {
    throw new Error('rocAuc: scores contain NaN.');
  }
  const nPositive = positives.filter(Boolean).length;
  const nNegative = positives.length - nPositive;
  if (nPositive === 0 || nNegative === 0) {
    return null;
  }

  const order = scores.map((_, i) => i).sort((a, b) => scores[a] - scores[b]);
  // Sum of the positives' ranks, ties given the mean of the ranks they span (1-based).
  let positiveRankSum = 0;
  for (let start = 0; start < order.length; ) {
    let end = start;
    while (end + 1 < order.length && scores[order[end + 1]] === scores[order[start]]) {
      end++;
    }
    const meanRank = (start + end) / 2 + 1;
    for (let k = start; k <= end; k++) {
      if (positives[order[k]]) {
        positiveRankSum += meanRank;
      }
    }
    start = end + 1;
  }
  const u = positiveRankSum - (nPositive * (nPositive + 1)) / 2;
  return u / (nPositive * nNegative);
}

export type PerClassAuc = Record<CovnetClass, number | null>;

/**
 * One-vs-rest AUC per class: class k's probability as the score, exams labelled k as positives.
 * @throws Error when probs and labels differ in length or a row does not have one value per class.
 */
export function oneVsRestAuc(probs: number[][], labels: number[]): PerClassAuc {
  if (probs.length !== labels.length) {
    throw new Error(`oneVsRestAuc: ${probs.length} probability rows but ${labels.length} labels.`);
  }
  probs.forEach((row, i) => {
    if (row.length !== CLASSES.length) {
      throw new Error(`oneVsRestAuc: row ${i} has ${row.length} values, expected ${CLASSES.length}.`);
    }
  });
  const result = {} as PerClassAuc;
  CLASSES.forEach((name, k) => {
    result[name] = rocAuc(
      probs.map((row) => row[k]),
      labels.map((label) => label === k),
    );
  });
  return result;
}
