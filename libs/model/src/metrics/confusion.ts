import { CLASSES } from '../covnet/classes';

/**
 * Confusion matrix with rows = true class and columns = predicted class, in CLASSES order.
 * @throws Error when the arrays differ in length or contain a value outside 0..numClasses-1.
 */
export function confusionMatrix(labels: number[], predicted: number[], numClasses: number = CLASSES.length): number[][] {
  if (labels.length !== predicted.length) {
    throw new Error(`confusionMatrix: ${labels.length} labels but ${predicted.length} predictions.`);
  }
  const matrix = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  labels.forEach((label, i) => {
    const guess = predicted[i];
    for (const [what, value] of [['label', label], ['prediction', guess]] as const) {
      if (!Number.isInteger(value) || value < 0 || value >= numClasses) {
        throw new Error(`confusionMatrix: ${what} ${value} at index ${i} is not a class index 0..${numClasses - 1}.`);
      }
    }
    matrix[label][guess] += 1;
  });
  return matrix;
}

/** Index of the largest value in each row (first one on ties), i.e. the predicted class. */
export function argmaxRows(probs: number[][]): number[] {
  return probs.map((row) => row.reduce((best, v, i) => (v > row[best] ? i : best), 0));
}

export interface SensitivitySpecificity {
  /** True positive rate; null without positives. */
  sensitivity: number | null;
  /** True negative rate; null without negatives. */
  specificity: number | null;
  threshold: number;
  truePositives: number;
  falseNegatives: number;
  trueNegatives: number;
  falsePositives: number;
}

/**
 * Sensitivity and specificity when a score >= threshold counts as positive.
 * @throws Error when the arrays differ in length.
 */
export function sensitivitySpecificity(scores: number[], positives: boolean[], threshold = 0.5): SensitivitySpecificity {
  if (scores.length !== positives.length) {
    throw new Error(`sensitivitySpecificity: ${scores.length} scores but ${positives.length} labels.`);
  }
  let truePositives = 0;
  let falseNegatives = 0;
  let trueNegatives = 0;
  let falsePositives = 0;
  scores.forEach((score, i) => {
    const called = score >= threshold;
    if (positives[i]) {
      if (called) truePositives++;
      else falseNegatives++;
    } else if (called) {
      falsePositives++;
    } else {
      trueNegatives++;
    }
  });
  const nPositive = truePositives + falseNegatives;
  const nNegative = trueNegatives + falsePositives;
  return {
    sensitivity: nPositive > 0 ? truePositives / nPositive : null,
    specificity: nNegative > 0 ? trueNegatives / nNegative : null,
    threshold,
    truePositives,
    falseNegatives,
    trueNegatives,
    falsePositives,
  };
}
