/** Two-sided 95 % quantile of the standard normal distribution. */
const Z_95 = 1.959963984540054;

/**
 * 95 % confidence interval of an AUC by the Hanley-McNeil standard error
 * (Hanley and McNeil, Radiology 143:29-36, 1982), clipped to [0, 1]:
 * SE^2 = (A(1-A) + (P-1)(Q1-A^2) + (N-1)(Q2-A^2)) / (P N), Q1 = A/(2-A), Q2 = 2A^2/(1+A).
 * @param positives number of positive exams, P; @param negatives number of negative exams, N.
 * @returns null when either count is 0, because the AUC is then undefined.
 */
export function aucInterval(auc: number, positives: number, negatives: number): { low: number; high: number } | null {
  if (positives <= 0 || negatives <= 0) return null;
  const q1 = auc / (2 - auc);
  const q2 = (2 * auc * auc) / (1 + auc);
  const variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (positives * negatives);
  const se = Math.sqrt(Math.max(variance, 0));
  return { low: Math.max(0, auc - Z_95 * se), high: Math.min(1, auc + Z_95 * se) };
}
