import { describe, expect, it } from 'vitest';
import { aucFromHistograms, scoreHistograms, sumHistograms } from '../src';

describe('scoreHistograms', () => {
  describe('when scores fall on bin edges', () => {
    it('puts 1.0 in the last bin and 0.1 in bin 1', () => {
      const histogram = scoreHistograms([0, 0.1, 0.55, 1], [true, false, true, false], 10);
      expect(histogram.positive).toEqual([1, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
      expect(histogram.negative).toEqual([0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
    });
  });

  describe('when a score is out of range', () => {
    it('rejects 1.5', () => {
      expect(() => scoreHistograms([1.5], [true])).toThrow(/1.5 at index 0 is outside \[0, 1\]/);
    });
  });
});

describe('aucFromHistograms', () => {
  // Site A: positives 0.95, 0.62; negatives 0.61, 0.1. Site B: positive 0.35; negatives 0.31, 0.8.
  const siteA = { scores: [0.95, 0.62, 0.61, 0.1], positives: [true, true, false, false] };
  const siteB = { scores: [0.35, 0.31, 0.8], positives: [true, false, false] };

  describe('when bins are fine enough to separate all scores', () => {
    it('equals the pooled exact AUC', () => {
      // Pooled pairs by hand: 0.95 beats 4 negatives, 0.62 beats 3, 0.35 beats 2: 9 / 12.
      const a = scoreHistograms(siteA.scores, siteA.positives, 1000);
      const b = scoreHistograms(siteB.scores, siteB.positives, 1000);
      const auc = aucFromHistograms(sumHistograms([a.positive, b.positive], 1000), sumHistograms([a.negative, b.negative], 1000));
      expect(auc).toBeCloseTo(0.75, 12);
    });
  });

  describe('when pairs share a bin', () => {
    it('counts same-bin pairs as one half', () => {
      // Ten bins: positives in bins 9, 6, 3; negatives in 6, 1, 3, 8.
      // Bin 9 beats 4; bin 6 beats 2 plus half of 1; bin 3 beats 1 plus half of 1: 8 / 12.
      const a = scoreHistograms(siteA.scores, siteA.positives, 10);
      const b = scoreHistograms(siteB.scores, siteB.positives, 10);
      const auc = aucFromHistograms(sumHistograms([a.positive, b.positive], 10), sumHistograms([a.negative, b.negative], 10));
      expect(auc).toBeCloseTo(8 / 12, 12);
    });
  });

  describe('when a histogram is empty', () => {
    it('returns null without negatives', () => {
      expect(aucFromHistograms([1, 2], [0, 0])).toBeNull();
    });
  });

  describe('when bin counts differ', () => {
    it('rejects histograms of different length', () => {
      expect(() => aucFromHistograms([1, 2], [1])).toThrow(/differ in bin count/);
    });
  });
});
