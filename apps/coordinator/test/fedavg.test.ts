import { describe, expect, it } from 'vitest';
import type { NamedTensor } from '@covnet/protocol';
import { FedAvgAccumulator, fedAvg, firstNonFinite, layoutMismatch, type ModelLayout } from '../src/aggregation/fedavg';

const LAYOUT: ModelLayout = [
  { name: 'conv/kernel', shape: [2, 2] },
  { name: 'conv/bias', shape: [2] },
];

function tensors(kernel: number[], bias: number[]): NamedTensor[] {
  return [
    { name: 'conv/kernel', shape: [2, 2], data: new Float32Array(kernel) },
    { name: 'conv/bias', shape: [2], data: new Float32Array(bias) },
  ];
}

describe('fedAvg', () => {
  describe('when two updates have weights 1 and 3', () => {
    it('returns (1*a + 3*b) / 4 exactly', () => {
      const a = tensors([1, -2, 0.5, 8], [0, 2]);
      const b = tensors([5, 2, 0.5, -8], [4, -2]);
      const result = fedAvg(LAYOUT, [
        { tensors: a, weight: 1 },
        { tensors: b, weight: 3 },
      ]);
      // (1+15)/4, (-2+6)/4, (0.5+1.5)/4, (8-24)/4 and (0+12)/4, (2-6)/4
      expect(Array.from(result[0].data)).toEqual([4, 1, 0.5, -4]);
      expect(Array.from(result[1].data)).toEqual([3, -1]);
      expect(result.map((t) => t.name)).toEqual(['conv/kernel', 'conv/bias']);
    });
  });

  describe('when all weights are equal', () => {
    it('returns the plain mean', () => {
      const result = fedAvg(LAYOUT, [
        { tensors: tensors([1, 2, 3, 4], [1, 1]), weight: 2 },
        { tensors: tensors([3, 2, 1, 0], [0, 3]), weight: 2 },
      ]);
      expect(Array.from(result[0].data)).toEqual([2, 2, 2, 2]);
      expect(Array.from(result[1].data)).toEqual([0.5, 2]);
    });
  });

  describe('when an update lists its tensors in another order', () => {
    it('matches them by name', () => {
      const reversed = tensors([4, 4, 4, 4], [8, 8]).reverse();
      const result = fedAvg(LAYOUT, [
        { tensors: tensors([0, 0, 0, 0], [0, 0]), weight: 1 },
        { tensors: reversed, weight: 1 },
      ]);
      expect(Array.from(result[0].data)).toEqual([2, 2, 2, 2]);
      expect(Array.from(result[1].data)).toEqual([4, 4]);
    });
  });

  describe('when the running sum exceeds float32 precision', () => {
    it('keeps the float64 sum', () => {
      // 2^24 + 1 is not a float32, so a float32 sum of 2^24 and 1 would lose the 1.
      const accumulator = new FedAvgAccumulator([{ name: 'w', shape: [1] }]);
      accumulator.add([{ name: 'w', shape: [1], data: new Float32Array([2 ** 24]) }], 1);
      accumulator.add([{ name: 'w', shape: [1], data: new Float32Array([1]) }], 1);
      accumulator.add([{ name: 'w', shape: [1], data: new Float32Array([-(2 ** 24)]) }], 1);
      expect(accumulator.result()[0].data[0]).toBe(Math.fround(1 / 3));
    });
  });

  describe('when the input is invalid', () => {
    it('rejects a weight of zero', () => {
      const accumulator = new FedAvgAccumulator(LAYOUT);
      expect(() => accumulator.add(tensors([0, 0, 0, 0], [0, 0]), 0)).toThrow('not a positive number');
    });

    it('rejects a result without updates', () => {
      expect(() => new FedAvgAccumulator(LAYOUT).result()).toThrow('no update');
    });
  });
});

describe('layoutMismatch', () => {
  describe('when names and shapes match', () => {
    it('returns null', () => {
      expect(layoutMismatch(LAYOUT, tensors([0, 0, 0, 0], [0, 0]))).toBeNull();
    });
  });

  describe('when the update differs', () => {
    it.each([
      ['a tensor is missing', [tensors([0, 0, 0, 0], [0, 0])[0]], 'update has 1 tensors, expected 2'],
      [
        'a tensor is renamed',
        [tensors([0, 0, 0, 0], [0, 0])[0], { name: 'conv/beta', shape: [2], data: new Float32Array(2) }],
        'tensor conv/bias is missing',
      ],
      [
        'a shape is transposed',
        [{ name: 'conv/kernel', shape: [1, 4], data: new Float32Array(4) }, tensors([0, 0, 0, 0], [0, 0])[1]],
        'tensor conv/kernel has shape [1,4], expected [2,2]',
      ],
      [
        'a shape has another rank',
        [{ name: 'conv/kernel', shape: [4], data: new Float32Array(4) }, tensors([0, 0, 0, 0], [0, 0])[1]],
        'tensor conv/kernel has shape [4], expected [2,2]',
      ],
    ])('reports it when %s', (_case, update, expected) => {
      expect(layoutMismatch(LAYOUT, update as NamedTensor[])).toBe(expected);
    });
  });
});

describe('firstNonFinite', () => {
  it.each([
    [Number.NaN, 'conv/bias'],
    [Number.POSITIVE_INFINITY, 'conv/bias'],
    [Number.NEGATIVE_INFINITY, 'conv/bias'],
    [3.5, null],
  ])('finds %s', (value, expected) => {
    expect(firstNonFinite(tensors([1, 2, 3, 4], [0, value]))).toBe(expected);
  });
});
