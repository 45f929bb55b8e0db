import { CLASS_NAMES, aucFromHistograms, sumHistograms, type ClassName, type SiteMetrics } from '@covnet/protocol';

/**
 * Per-class AUC over the validation exams of all sites together, from the
 * sum of their score histograms. This is not the mean of the sites' AUCs:
 * pooling weighs every positive-negative pair across sites equally.
 */
export function pooledAuc(reports: readonly SiteMetrics[]): Record<ClassName, number | null> {
  const auc = {} as Record<ClassName, number | null>;
  for (const name of CLASS_NAMES) {
    if (reports.length === 0) {
      auc[name] = null;
      continue;
    }
    const positive = sumHistograms(reports.map((r) => r.histograms[name].positive));
    const negative = sumHistograms(reports.map((r) => r.histograms[name].negative));
    auc[name] = aucFromHistograms(positive, negative);
  }
  return auc;
}
