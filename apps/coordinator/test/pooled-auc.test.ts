import { describe, expect, it } from 'vitest';
import { HISTOGRAM_BINS, type SiteMetrics } from '@covnet/protocol';
import { pooledAuc } from '../src/metrics/pooled-auc';

function histogram(entries: Record<number, number> = {}): number[] {
  const bins = new Array<number>(HISTOGRAM_BINS).fill(0);
  for (const [bin, count] of Object.entries(entries)) bins[Number(bin)] = count;
  return bins;
}

function metrics(covid: { positive: Record<number, number>; negative: Record<number, number> }): SiteMetrics {
  return {
    valExams: 0,
    loss: null,
    auc: { covid19: null, cap: null, non_pneumonia: null },
    confusion: [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
    histograms: {
      covid19: { positive: histogram(covid.positive), negative: histogram(covid.negative) },
      cap: { positive: histogram(), negative: histogram() },
      non_pneumonia: { positive: histogram({ 3: 1 }), negative: histogram() },
    },
  };
}

describe('pooledAuc', () => {
  describe('when each site alone separates perfectly', () => {
    it('pools the pairs across sites', () => {
      // Site 1: positive at bin 60 over a negative at 40. Site 2: positive at 30 over a negative at 10.
      // Pooled pairs: 60>40, 60>10, 30>10 win and 30<40 loses, so AUC = 3/4, not the mean of 1 and 1.
      const auc = pooledAuc([metrics({ positive: { 60: 1 }, negative: { 40: 1 } }), metrics({ positive: { 30: 1 }, negative: { 10: 1 } })]);
      expect(auc.covid19).toBe(0.75);
    });
  });

  describe('when a class has no negatives anywhere', () => {
    it('returns null for that class', () => {
      const auc = pooledAuc([metrics({ positive: { 1: 1 }, negative: { 0: 1 } })]);
      expect(auc.non_pneumonia).toBeNull();
      expect(auc.cap).toBeNull();
    });
  });

  describe('when no site reported', () => {
    it('returns null for every class', () => {
      expect(pooledAuc([])).toEqual({ covid19: null, cap: null, non_pneumonia: null });
    });
  });
});
