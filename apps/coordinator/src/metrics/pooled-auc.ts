import { CLASS_NAMES, aucFromHistograms, sumHistograms, type ClassName, type SiteMetrics } from '@covnet/protocol';
import { aucInterval } from './auc-interval';

/**
 * Per-class AUC over the validation exams of all sites together, from the
 * sum of their score histograms. This is not the mean of the sites' AUCs:
 * pooling weighs every positive-negative pair across sites equally.
 */
export function pooledAuc(reports: readonly SiteMetrics[]): Record<ClassName, number | null> {
  const auc = {} as Record<ClassName, number | null>;
  for (const [name, pooled] of Object.entries(pooledAucWithInterval(reports))) auc[name as ClassName] = pooled.auc;
  return auc;
}

/** Pooled AUC of one class with its 95 % confidence interval and the exam counts behind it. */
export interface PooledClassAuc {
  auc: number | null;
  /** Hanley-McNeil 95 % interval; null where the AUC is null. */
  low: number | null;
  high: number | null;
  positives: number;
  negatives: number;
}

/** Like `pooledAuc`, with each class's confidence interval and positive and negative exam counts. */
export function pooledAucWithInterval(reports: readonly SiteMetrics[]): Record<ClassName, PooledClassAuc> {
  const result = {} as Record<ClassName, PooledClassAuc>;
  for (const name of CLASS_NAMES) {
    if (reports.length === 0) {
      result[name] = { auc: null, low: null, high: null, positives: 0, negatives: 0 };
      continue;
    }
    const positive = sumHistograms(reports.map((r) => r.histograms[name].positive));
    const negative = sumHistograms(reports.map((r) => r.histograms[name].negative));
    const positives = positive.reduce((a, b) => a + b, 0);
    const negatives = negative.reduce((a, b) => a + b, 0);
    const auc = aucFromHistograms(positive, negative);
    const interval = auc === null ? null : aucInterval(auc, positives, negatives);
    result[name] = { auc, low: interval?.low ?? null, high: interval?.high ?? null, positives, negatives };
  }
  return result;
}
