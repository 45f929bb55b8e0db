import { describe, expect, it } from 'vitest';
import { ProtocolError, aucFromHistograms, parseEvent, scoreHistograms } from '../src';

describe('parseEvent', () => {
  describe('when a field has the wrong type', () => {
    it('names the event and the field', () => {
      const payload = { round: 'one', modelVersion: 0, numExamples: 3, trainLoss: 0.5, payload: {} };
      expect(() => parseEvent('update:begin', payload)).toThrow(ProtocolError);
      expect(() => parseEvent('update:begin', payload)).toThrow(/update:begin: field round:/);
    });
  });

  describe('when a field is unknown', () => {
    it('rejects it instead of passing it on', () => {
      expect(() => parseEvent('model:chunk', { version: 0, index: 0, pixels: [1, 2] })).toThrow(/pixels/);
    });
  });

  describe('when a chunk is JSON numbers instead of binary', () => {
    it('rejects it', () => {
      expect(() => parseEvent('update:chunk', { uploadId: 'u', index: 0, data: [1, 2, 3] })).toThrow(/field data: expected binary/);
    });
  });

  it('accepts a valid hello', () => {
    const hello = {
      agentVersion: '0.1.0',
      backend: 'wasm',
      backbone: 'small',
      inputSize: 64,
      trainExams: { covid19: 1, cap: 2, non_pneumonia: 3 },
      valExams: { covid19: 0, cap: 1, non_pneumonia: 1 },
    };
    expect(parseEvent('site:hello', hello)).toEqual(hello);
  });
});

describe('score histograms', () => {
  it('pools AUC as Mann-Whitney over bins', () => {
    // Positives 0.9, 0.6, 0.35; negatives 0.1, 0.35, 0.7. Pairs won by the positive:
    // 0.9 beats all 3; 0.6 beats 0.1 and 0.35; 0.35 beats 0.1 and ties 0.35 (1/2).
    // (3 + 2 + 1.5) / 9 = 0.7222...
    const h = scoreHistograms([0.9, 0.6, 0.35, 0.1, 0.35, 0.7], [true, true, true, false, false, false]);
    expect(aucFromHistograms(h.positive, h.negative)).toBeCloseTo(6.5 / 9, 12);
  });

  it('returns null when one class is absent', () => {
    const h = scoreHistograms([0.2, 0.8], [true, true]);
    expect(aucFromHistograms(h.positive, h.negative)).toBeNull();
  });

  it('rejects a score outside [0, 1]', () => {
    expect(() => scoreHistograms([1.5], [true])).toThrow(/outside \[0, 1\]/);
  });
});

describe('metrics:report', () => {
  const zeros = () => new Array<number>(200).fill(0);
  // Two validation exams: one COVID-19 scored 0.9, one non-pneumonia scored 0.2 for COVID-19.
  function report() {
    const covid = { positive: zeros(), negative: zeros() };
    covid.positive[180] = 1;
    covid.negative[40] = 1;
    const cap = { positive: zeros(), negative: zeros() };
    cap.negative[10] = 2;
    const non = { positive: zeros(), negative: zeros() };
    non.positive[150] = 1;
    non.negative[5] = 1;
    return {
      round: 1,
      modelVersion: 1,
      trainExams: 5,
      metrics: {
        valExams: 2,
        loss: 0.3,
        auc: { covid19: 1, cap: null, non_pneumonia: 1 },
        confusion: [
          [1, 0, 0],
          [0, 0, 0],
          [0, 0, 1],
        ],
        histograms: { covid19: covid, cap, non_pneumonia: non },
      },
    };
  }

  it('accepts consistent counts', () => {
    expect(() => parseEvent('metrics:report', report())).not.toThrow();
  });

  describe('when counts disagree with valExams', () => {
    it('rejects a confusion matrix of another total', () => {
      const bad = report();
      bad.metrics.confusion[0][0] = 9e6;
      expect(() => parseEvent('metrics:report', bad)).toThrow(/field metrics\.confusion: counts 9000001 exams, valExams is 2/);
    });

    it('rejects a histogram of another total', () => {
      const bad = report();
      bad.metrics.histograms.cap.negative[10] = 3;
      expect(() => parseEvent('metrics:report', bad)).toThrow(/field metrics\.histograms\.cap: counts 3 exams/);
    });
  });

  it('rejects a count above the exam limit', () => {
    const bad = report();
    bad.metrics.histograms.covid19.negative[0] = 1e300;
    expect(() => parseEvent('metrics:report', bad)).toThrow(/metrics\.histograms\.covid19\.negative\.0/);
  });
});

describe('update:begin', () => {
  it('rejects an exam count that would dominate FedAvg', () => {
    const payload = {
      round: 1,
      modelVersion: 0,
      numExamples: 1e300,
      trainLoss: 0.5,
      payload: { sha256: 'a'.repeat(64), byteLength: 10, chunkCount: 1, chunkBytes: 1024 },
    };
    expect(() => parseEvent('update:begin', payload)).toThrow(/field numExamples/);
  });
});
