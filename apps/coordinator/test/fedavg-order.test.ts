import { describe, expect, it } from 'vitest';
import type { NamedTensor } from '@covnet/protocol';
import { FedAvgAccumulator, type ModelLayout } from '../src';

// FedAvg sums w * x in float64 and rounds the mean to float32 once. With
// integer weights below 2^29, each product of a weight and a float32 value is
// exact in float64, and each of the n - 1 additions errs by at most 2^-53 of
// the running sum. Two arrival orders therefore differ by at most
// 2 (n - 1) 2^-53 sum|w x| / W before the final rounding. While that is below
// one float32 ulp of the mean, which holds when
// sum|w x| / |sum w x| < 2^28 / (n - 1), the two float32 results are equal or
// neighbours: at most 1 ulp apart.

const LAYOUT: ModelLayout = [{ name: 'w', shape: [4096] }];

function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

function fedAvgInOrder(updates: { data: Float32Array; weight: number }[]): Float32Array {
  const accumulator = new FedAvgAccumulator(LAYOUT);
  for (const update of updates) accumulator.add([{ name: 'w', shape: [update.data.length], data: update.data } satisfies NamedTensor], update.weight);
  return accumulator.result()[0].data;
}

function ulpDistance(a: number, b: number): number {
  const bits = new Int32Array(new Float32Array([a, b]).buffer);
  const ordered = (x: number) => (x < 0 ? -(x & 0x7fffffff) : x);
  return Math.abs(ordered(bits[0]) - ordered(bits[1]));
}

function permuted<T>(items: T[], next: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy;
}

describe('FedAvg arrival order', () => {
  describe('when 50 updates of mixed sign arrive in any order', () => {
    it('stays within 1 ulp of float32', () => {
      const next = random(7);
      const updates = Array.from({ length: 50 }, () => ({
        data: Float32Array.from({ length: 4096 }, () => (next() - 0.5) * 2 ** Math.floor(next() * 8 - 4)),
        weight: 1 + Math.floor(next() * 500),
      }));
      const reference = fedAvgInOrder(updates);
      let differing = 0;
      for (let trial = 0; trial < 20; trial++) {
        const other = fedAvgInOrder(permuted(updates, next));
        for (let i = 0; i < reference.length; i++) {
          const distance = ulpDistance(reference[i], other[i]);
          expect(distance, `value ${i}, order ${trial}`).toBeLessThanOrEqual(1);
          if (distance > 0) differing += 1;
        }
      }
      // The float64 sum leaves so much headroom that nearly every value is identical bit for bit.
      expect(differing).toBeLessThan(0.01 * 20 * reference.length);
    });
  });

  describe('when values cancel beyond the condition of the bound', () => {
    it('keeps the absolute error bound', () => {
      // 2^100 + 1 - 2^100 is 0 or 1 in float64 depending on the order, so
      // sum|w x| / |sum w x| is about 2^101 and the ulp bound does not apply.
      const big = 2 ** 100;
      const updates = [new Float32Array([big]), new Float32Array([1]), new Float32Array([-big])].map((data) => ({ data, weight: 1 }));
      const LAYOUT_ONE: ModelLayout = [{ name: 'w', shape: [1] }];
      const fold = (order: typeof updates) => {
        const accumulator = new FedAvgAccumulator(LAYOUT_ONE);
        for (const u of order) accumulator.add([{ name: 'w', shape: [1], data: u.data }], u.weight);
        return accumulator.result()[0].data[0];
      };
      const bigFirst = fold(updates);
      const oneLast = fold([updates[0], updates[2], updates[1]]);
      // By hand: (2^100 + 1) rounds to 2^100 in float64, so the first order gives 0; the second gives 1/3.
      expect(bigFirst).toBe(0);
      expect(oneLast).toBe(Math.fround(1 / 3));
      const bound = (2 * (updates.length - 1) * 2 ** -53 * (2 * big + 1)) / 3;
      expect(Math.abs(bigFirst - oneLast)).toBeLessThanOrEqual(bound);
    });
  });
});
