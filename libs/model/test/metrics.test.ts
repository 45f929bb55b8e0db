import { describe, expect, it } from 'vitest';
import {
  argmaxRows,
  confusionMatrix,
  oneVsRestAuc,
  rocAuc,
  sensitivitySpecificity,
} from '../src';

describe('rocAuc', () => {
  describe('when scores are distinct', () => {
    it('matches the pair count', () => {
      // 14 of the 16 positive/negative pairs are ordered correctly: 14/16.
      // scikit-learn 1.2.1 roc_auc_score gives 0.875 as well.
      const scores = [0.1, 0.4, 0.35, 0.8, 0.65, 0.2, 0.9, 0.5];
      const positives = [false, false, true, true, true, false, true, false];
      expect(rocAuc(scores, positives)).toBeCloseTo(0.875, 12);
    });
  });

  describe('when scores tie', () => {
    it('counts tied pairs as one half', () => {
      // Pairs by hand: 0.3 vs (0.3, 0.7, 0.1) = 1.5 twice, 0.7 vs them = 2.5; 5.5 / 9.
      // scikit-learn 1.2.1 roc_auc_score gives 0.6111111111111112.
      const scores = [0.3, 0.3, 0.3, 0.7, 0.7, 0.1];
      const positives = [true, false, true, false, true, false];
      expect(rocAuc(scores, positives)).toBeCloseTo(5.5 / 9, 12);
    });

    it('gives 0.5 when every score is equal', () => {
      expect(rocAuc([0.4, 0.4, 0.4, 0.4], [true, false, true, false])).toBe(0.5);
    });
  });

  describe('when only one class is present', () => {
    it('returns null for positives only', () => {
      expect(rocAuc([0.2, 0.9], [true, true])).toBeNull();
    });

    it('returns null for negatives only', () => {
      expect(rocAuc([0.2, 0.9], [false, false])).toBeNull();
    });
  });

  describe('when the input is invalid', () => {
    it('rejects mismatched lengths', () => {
      expect(() => rocAuc([0.1, 0.2], [true])).toThrow(/2 scores but 1 labels/);
    });

    it('rejects NaN scores', () => {
      expect(() => rocAuc([NaN, 0.2], [true, false])).toThrow(/NaN/);
    });
  });
});

describe('oneVsRestAuc', () => {
  describe('when all classes are present', () => {
    it('matches scikit-learn per class', () => {
      // Values from scikit-learn 1.2.1: roc_auc_score(labels == k, probs[:, k]).
      const probs = [
        [0.7, 0.2, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.3, 0.6],
        [0.4, 0.4, 0.2],
        [0.3, 0.3, 0.4],
        [0.6, 0.1, 0.3],
        [0.2, 0.6, 0.2],
      ];
      const labels = [0, 1, 2, 1, 2, 0, 0];
      const auc = oneVsRestAuc(probs, labels);
      expect(auc.covid19).toBeCloseTo(0.7916666666666666, 12);
      expect(auc.cap).toBeCloseTo(0.8, 12);
      expect(auc.non_pneumonia).toBeCloseTo(1.0, 12);
    });
  });

  describe('when a class is absent', () => {
    it('returns null for that class only', () => {
      const auc = oneVsRestAuc(
        [
          [0.8, 0.1, 0.1],
          [0.1, 0.8, 0.1],
        ],
        [0, 1],
      );
      expect(auc.covid19).toBe(1);
      expect(auc.cap).toBe(1);
      expect(auc.non_pneumonia).toBeNull();
    });
  });

  describe('when a row is malformed', () => {
    it('rejects a row of two values', () => {
      expect(() => oneVsRestAuc([[0.5, 0.5]], [0])).toThrow(/row 0 has 2 values, expected 3/);
    });
  });
});

describe('confusionMatrix', () => {
  describe('when labels and predictions are valid', () => {
    it('puts true classes in rows', () => {
      // scikit-learn 1.2.1 confusion_matrix(labels, predicted, labels=[0, 1, 2]).
      const matrix = confusionMatrix([0, 1, 2, 1, 2, 0, 0], [0, 1, 2, 0, 2, 0, 1]);
      expect(matrix).toEqual([
        [2, 1, 0],
        [1, 1, 0],
        [0, 0, 2],
      ]);
    });
  });

  describe('when a value is not a class index', () => {
    it('rejects a prediction of 3', () => {
      expect(() => confusionMatrix([0], [3])).toThrow(/prediction 3 at index 0/);
    });
  });

  describe('when predictions come from probabilities', () => {
    it('takes the first maximum on ties', () => {
      expect(
        argmaxRows([
          [0.2, 0.5, 0.3],
          [0.4, 0.4, 0.2],
        ]),
      ).toEqual([1, 0]);
    });
  });
});

describe('sensitivitySpecificity', () => {
  describe('when the threshold is 0.5', () => {
    it('counts a score equal to the threshold as positive', () => {
      // Positives 0.9, 0.5, 0.2 -> 2 called; negatives 0.6, 0.1, 0.3, 0.49 -> 3 not called.
      const result = sensitivitySpecificity([0.9, 0.5, 0.2, 0.6, 0.1, 0.3, 0.49], [true, true, true, false, false, false, false], 0.5);
      expect(result.truePositives).toBe(2);
      expect(result.falseNegatives).toBe(1);
      expect(result.trueNegatives).toBe(3);
      expect(result.falsePositives).toBe(1);
      expect(result.sensitivity).toBeCloseTo(2 / 3, 12);
      expect(result.specificity).toBeCloseTo(3 / 4, 12);
    });
  });

  describe('when a class is absent', () => {
    it('returns null sensitivity without positives', () => {
      const result = sensitivitySpecificity([0.1, 0.7], [false, false]);
      expect(result.sensitivity).toBeNull();
      expect(result.specificity).toBe(0.5);
    });
  });
});
