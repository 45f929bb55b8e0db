import { describe, expect, it } from 'vitest';
import type { NamedTensor } from '@covnet/protocol';
import { fedAvg, type ModelLayout } from '../src/aggregation/fedavg';
import { RobustAggregator, type RobustRule } from '../src/aggregation/robust';
import { UpdateNormCheck, median, updateDistance } from '../src/aggregation/update-norm';
import { aggregationRule, parseExperimentSettings } from '../src/experiments/experiment-settings';

const LAYOUT: ModelLayout = [
  { name: 'dense/kernel', shape: [2] },
  { name: 'dense/bias', shape: [1] },
];

/** Returns one update of LAYOUT: kernel [k0, k1] and bias [b]. */
function update(k0: number, k1: number, b: number): NamedTensor[] {
  return [
    { name: 'dense/kernel', shape: [2], data: new Float32Array([k0, k1]) },
    { name: 'dense/bias', shape: [1], data: new Float32Array([b]) },
  ];
}

function aggregate(rule: RobustRule, updates: NamedTensor[][], weights?: number[]): number[] {
  const aggregator = new RobustAggregator(LAYOUT, rule);
  updates.forEach((u, i) => aggregator.add(u, weights?.[i] ?? 1));
  return aggregator.result().flatMap((t) => Array.from(t.data));
}

describe('RobustAggregator', () => {
  describe('when the rule is median', () => {
    it('takes the middle value of an odd count', () => {
      // Per coordinate: {5, -1, 2} -> 2, {0.5, 0.25, 8} -> 0.5, {3, 3, -7} -> 3.
      const result = aggregate({ name: 'median' }, [update(5, 0.5, 3), update(-1, 0.25, 3), update(2, 8, -7)]);
      expect(result).toEqual([2, 0.5, 3]);
    });

    it('averages the two middle values of an even count', () => {
      // {1, 4, 2, 8} -> (2 + 4) / 2 = 3; {-3, -1, -2, 10} -> (-2 - 1) / 2 = -1.5; {0, 0, 1, 1} -> 0.5.
      const result = aggregate({ name: 'median' }, [update(1, -3, 0), update(4, -1, 1), update(2, -2, 0), update(8, 10, 1)]);
      expect(result).toEqual([3, -1.5, 0.5]);
    });

    it('ignores the exam counts', () => {
      const updates = [update(5, 0.5, 3), update(-1, 0.25, 3), update(2, 8, -7)];
      expect(aggregate({ name: 'median' }, updates, [1, 1000, 1])).toEqual([2, 0.5, 3]);
    });
  });

  describe('when the rule is trimmed-mean', () => {
    it('cuts floor(0.2 * 5) = 1 value at each end of five', () => {
      // {1, 2, 3, 4, 100} -> (2 + 3 + 4) / 3 = 3; {-50, 0, 1, 2, 3} -> (0 + 1 + 2) / 3 = 1; {7, 7, 7, 7, 7} -> 7.
      const updates = [update(100, 3, 7), update(2, -50, 7), update(1, 2, 7), update(4, 0, 7), update(3, 1, 7)];
      expect(aggregate({ name: 'trimmed-mean', trimFraction: 0.2 }, updates)).toEqual([3, 1, 7]);
    });

    it('cuts nothing when floor(fraction * n) is 0', () => {
      // floor(0.2 * 4) = 0: the plain mean (1 + 2 + 3 + 10) / 4 = 4.
      const updates = [update(1, 0, 0), update(2, 0, 0), update(3, 0, 0), update(10, 0, 0)];
      expect(aggregate({ name: 'trimmed-mean', trimFraction: 0.2 }, updates)[0]).toBe(4);
    });

    it('cuts one value at each end of an even count', () => {
      // floor(0.25 * 4) = 1: {1, 2, 3, 10} -> (2 + 3) / 2 = 2.5; {-8, 0.5, 0.25, 6} -> (0.25 + 0.5) / 2 = 0.375.
      const updates = [update(1, -8, 0), update(2, 0.5, 0), update(3, 0.25, 0), update(10, 6, 0)];
      expect(aggregate({ name: 'trimmed-mean', trimFraction: 0.25 }, updates).slice(0, 2)).toEqual([2.5, 0.375]);
    });

    it('ignores the exam counts', () => {
      const updates = [update(100, 3, 7), update(2, -50, 7), update(1, 2, 7), update(4, 0, 7), update(3, 1, 7)];
      expect(aggregate({ name: 'trimmed-mean', trimFraction: 0.2 }, updates, [1, 2, 300, 4, 5])).toEqual([3, 1, 7]);
    });

    it('rejects a trim fraction of 0.5', () => {
      expect(() => new RobustAggregator(LAYOUT, { name: 'trimmed-mean', trimFraction: 0.5 })).toThrow('trimFraction 0.5 is outside [0, 0.5)');
    });
  });

  describe('when one of six updates is poisoned', () => {
    // Five honest sites near 1; the sixth sends an honest update times 1000.
    const honest = [0.9, 0.95, 1, 1.05, 1.1].map((v) => update(v, v, v));
    const poisoned = update(1100, 1100, 1100);

    it('moves the median by little', () => {
      const before = aggregate({ name: 'median' }, honest)[0];
      const after = aggregate({ name: 'median' }, [...honest, poisoned])[0];
      // Honest median 1; with the poisoned value, (1 + 1.05) / 2 = 1.025.
      expect(before).toBe(1);
      expect(after).toBeCloseTo(1.025, 6);
    });

    it('moves the FedAvg mean a lot', () => {
      const weighted = (updates: NamedTensor[][]) => fedAvg(LAYOUT, updates.map((tensors) => ({ tensors, weight: 1 })))[0].data[0];
      // Honest mean 5 / 5 = 1; with the poisoned value, (5 + 1100) / 6 = 184.1667.
      expect(weighted(honest)).toBeCloseTo(1, 6);
      expect(weighted([...honest, poisoned])).toBeCloseTo(184.1667, 3);
    });
  });

  describe('when reset', () => {
    it('forgets the kept updates', () => {
      const aggregator = new RobustAggregator(LAYOUT, { name: 'median' });
      aggregator.add(update(100, 100, 100), 1);
      aggregator.reset();
      aggregator.add(update(1, 2, 3), 1);
      expect(aggregator.updates).toBe(1);
      expect(aggregator.result().flatMap((t) => Array.from(t.data))).toEqual([1, 2, 3]);
    });
  });

  describe('when the input is invalid', () => {
    it('rejects an update of another layout', () => {
      const aggregator = new RobustAggregator(LAYOUT, { name: 'median' });
      expect(() => aggregator.add(update(1, 2, 3).slice(0, 1), 1)).toThrow('update has 1 tensors, expected 2');
    });

    it('rejects a result without updates', () => {
      expect(() => new RobustAggregator(LAYOUT, { name: 'median' }).result()).toThrow('median has no update to aggregate');
    });
  });
});

describe('updateDistance', () => {
  it('is the L2 norm of the difference over all tensors', () => {
    const global = new Map([
      ['dense/kernel', new Float32Array([1, 1])],
      ['dense/bias', new Float32Array([0])],
    ]);
    // (3 - 1)^2 + (-1 - 1)^2 + 1^2 = 9, so the distance is 3.
    expect(updateDistance(global, update(3, -1, 1))).toBe(3);
  });

  it('rejects a tensor the global model lacks', () => {
    expect(() => updateDistance(new Map([['dense/kernel', new Float32Array(2)]]), update(0, 0, 0))).toThrow('tensor dense/bias of the update does not match');
  });
});

describe('median', () => {
  it('averages the middle pair of an even count', () => {
    expect(median([10, 1, 3, 2])).toBe(2.5);
    expect(median([4, 1, 9])).toBe(4);
  });
});

describe('UpdateNormCheck', () => {
  describe('when maxUpdateNorm is set', () => {
    it('rejects only distances above it', () => {
      const check = new UpdateNormCheck({ maxUpdateNorm: 5, maxUpdateNormRatio: null });
      expect(check.violation(5)).toBeNull();
      expect(check.violation(5.01)).toContain('above maxUpdateNorm 5.000');
    });
  });

  describe('when maxUpdateNormRatio is set', () => {
    it('checks nothing before a round was aggregated', () => {
      const check = new UpdateNormCheck({ maxUpdateNorm: null, maxUpdateNormRatio: 3 });
      expect(check.violation(1e12)).toBeNull();
    });

    it('compares with the previous round median', () => {
      const check = new UpdateNormCheck({ maxUpdateNorm: null, maxUpdateNormRatio: 3 });
      // Median of {1, 10, 2, 3} is 2.5, so the bound is 7.5.
      check.roundAggregated([1, 10, 2, 3]);
      expect(check.reference).toBe(2.5);
      expect(check.violation(7.5)).toBeNull();
      expect(check.violation(7.6)).toContain('3.040 times the previous round');
    });

    it('keeps the reference when a round median is 0', () => {
      const check = new UpdateNormCheck({ maxUpdateNorm: null, maxUpdateNormRatio: 3 });
      check.roundAggregated([2]);
      check.roundAggregated([0, 0, 5]);
      expect(check.reference).toBe(2);
    });
  });

  it('is disabled without bounds', () => {
    expect(new UpdateNormCheck({ maxUpdateNorm: null, maxUpdateNormRatio: null }).enabled).toBe(false);
  });
});

describe('aggregation settings', () => {
  it('reads trimmed-mean with its trim fraction', () => {
    const settings = parseExperimentSettings({ name: 'x', aggregation: 'trimmed-mean', trimFraction: 0.1, maxUpdateNormRatio: 4 }, 'test');
    expect(aggregationRule(settings)).toEqual({ name: 'trimmed-mean', trimFraction: 0.1 });
    expect(settings.maxUpdateNormRatio).toBe(4);
  });

  it('defaults to fedavg, and trimmed-mean to a fraction of 0.2', () => {
    expect(aggregationRule(parseExperimentSettings({ name: 'x' }, 'test'))).toEqual({ name: 'fedavg' });
    expect(aggregationRule(parseExperimentSettings({ name: 'x', aggregation: 'trimmed-mean' }, 'test'))).toEqual({ name: 'trimmed-mean', trimFraction: 0.2 });
  });

  it.each([
    [{ aggregation: 'median', trimFraction: 0.1 }, 'field trimFraction: applies only to aggregation trimmed-mean'],
    [{ aggregation: 'trimmed-mean', trimFraction: 0.5 }, 'field trimFraction'],
    [{ aggregation: 'krum' }, 'field aggregation'],
    [{ maxUpdateNormRatio: 1 }, 'field maxUpdateNormRatio'],
    [{ maxUpdateNorm: 0 }, 'field maxUpdateNorm'],
  ])('rejects %j', (fields, message) => {
    expect(() => parseExperimentSettings({ name: 'x', ...fields }, 'test')).toThrow(message);
  });
});
