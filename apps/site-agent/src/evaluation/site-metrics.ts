import { CLASS_NAMES, scoreHistograms, type SiteMetrics } from '@covnet/protocol';
import { confusionMatrix, oneVsRestAuc } from '@covnet/model';

/**
 * Summarises a site's validation predictions into the aggregate metrics that
 * may leave the site: per-class AUC, the confusion matrix, the mean
 * cross-entropy and binned score histograms. No per-exam value is included.
 */
export function summariseValidation(probs: number[][], labels: number[]): SiteMetrics {
  const predicted = probs.map((p) => p.indexOf(Math.max(...p)));
  const histograms = Object.fromEntries(
    CLASS_NAMES.map((name, k) => [
      name,
      scoreHistograms(
        probs.map((p) => clampUnit(p[k])),
        labels.map((label) => label === k),
      ),
    ]),
  ) as SiteMetrics['histograms'];
  const loss =
    labels.length === 0
      ? null
      : labels.reduce((sum, label, i) => sum - Math.log(Math.max(probs[i][label], 1e-7)), 0) / labels.length;
  return {
    valExams: labels.length,
    loss,
    auc: oneVsRestAuc(probs, labels),
    confusion: confusionMatrix(labels, predicted, 3),
    histograms,
  };
}

// Softmax outputs can exceed 1 by a rounding error in float32.
function clampUnit(x: number): number {
  return Math.min(1, Math.max(0, x));
}
