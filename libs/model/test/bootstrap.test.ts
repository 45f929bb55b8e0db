import { describe, expect, it } from 'vitest';
import { bootstrapAucInterval, bootstrapIndices, oneVsRestAucIntervals } from '../src';

// Twelve exams with tied scores (0.5 twice, one positive and one negative).
const SCORES = [0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9, 0.5, 0.5, 0.3, 0.65, 0.45];
const POSITIVES = [false, false, true, true, false, false, true, true, false, false, true, true];

describe('bootstrapAucInterval', () => {
  describe('when both classes are present', () => {
    it('matches scikit-learn on the same resamples', () => {
      // Reference: the 200 resamples of bootstrapIndices(12, 200, 7), each scored with
      // sklearn.metrics.roc_auc_score (scikit-learn 1.2.1), then numpy.percentile at 2.5
      // and 97.5: AUC 0.7916666666666667, interval [0.5692708333333333, 1.0], none skipped.
      const interval = bootstrapAucInterval(SCORES, POSITIVES, { resamples: 200, seed: 7 });
      expect(interval).not.toBeNull();
      expect(interval!.auc).toBeCloseTo(0.7916666666666667, 12);
      expect(interval!.lower).toBeCloseTo(0.5692708333333333, 12);
      expect(interval!.upper).toBeCloseTo(1.0, 12);
      expect(interval!.resamples).toBe(200);
      expect(interval!.skipped).toBe(0);
    });

    it('gives the same interval for the same seed', () => {
      const first = bootstrapAucInterval(SCORES, POSITIVES, { resamples: 100, seed: 3 });
      const second = bootstrapAucInterval(SCORES, POSITIVES, { resamples: 100, seed: 3 });
      expect(second).toEqual(first);
    });
  });

  describe('when the classes separate perfectly', () => {
    it('returns the interval [1, 1]', () => {
      const interval = bootstrapAucInterval([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [false, false, false, true, true, true], { resamples: 300 });
      expect(interval!.auc).toBe(1);
      expect(interval!.lower).toBe(1);
      expect(interval!.upper).toBe(1);
      // A resample draws one class only with probability 2 * (1/2)^6 = 1/32, so about 9 of
      // 300 are skipped; the bound below fails only with negligible probability.
      expect(interval!.skipped).toBeLessThan(40);
      expect(interval!.resamples + interval!.skipped).toBe(300);
    });
  });

  describe('when only one class is present', () => {
    it('returns null', () => {
      expect(bootstrapAucInterval([0.2, 0.4, 0.9], [true, true, true])).toBeNull();
    });
  });

  describe('when one exam of each class is given', () => {
    it('counts the one-class resamples as skipped', () => {
      // Each resample of two exams draws both classes with probability 1/2, so the skipped
      // count is Binomial(400, 1/2): 200 on average, outside 140..260 with probability < 1e-8.
      const interval = bootstrapAucInterval([0.3, 0.6], [false, true], { resamples: 400, seed: 1 });
      expect(interval!.auc).toBe(1);
      expect(interval!.resamples + interval!.skipped).toBe(400);
      expect(interval!.skipped).toBeGreaterThan(140);
      expect(interval!.skipped).toBeLessThan(260);
    });
  });

  describe('when the options are invalid', () => {
    it('rejects zero resamples', () => {
      expect(() => bootstrapAucInterval(SCORES, POSITIVES, { resamples: 0 })).toThrow(/resamples/);
    });

    it('rejects confidence 1', () => {
      expect(() => bootstrapAucInterval(SCORES, POSITIVES, { confidence: 1 })).toThrow(/confidence/);
    });
  });
});

describe('bootstrapIndices', () => {
  it('draws indices within range', () => {
    const resamples = bootstrapIndices(5, 50, 2);
    expect(resamples).toHaveLength(50);
    for (const indices of resamples) {
      expect(indices).toHaveLength(5);
      expect(Math.max(...indices)).toBeLessThan(5);
    }
  });
});

describe('oneVsRestAucIntervals', () => {
  describe('when a class is absent', () => {
    it('returns null for that class only', () => {
      const probs = [
        [0.7, 0.1, 0.2],
        [0.2, 0.1, 0.7],
        [0.6, 0.2, 0.2],
        [0.1, 0.3, 0.6],
      ];
      const intervals = oneVsRestAucIntervals(probs, [0, 2, 0, 2], { resamples: 200 });
      expect(intervals.cap).toBeNull();
      expect(intervals.covid19!.auc).toBe(1);
      expect(intervals.non_pneumonia!.auc).toBe(1);
    });
  });
});
