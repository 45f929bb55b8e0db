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
