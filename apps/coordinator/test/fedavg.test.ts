import { describe, expect, it } from 'vitest';
import type { NamedTensor } from '@covnet/protocol';
import { FedAvgAccumulator, fedAvg, firstNonFinite, layoutMismatch, type ModelLayout } from '../src/aggregation/fedavg';
import { updateValues as values } from './support/update-values';

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

describe('FedAvgAccumulator SIMD sum', () => {
  // Lengths cover the 4-wide vector loop, its 1 to 3 value tail, and tensors
  // longer than the kernel's 16,384-value scratch area.
  const layout: ModelLayout = [
    { name: 'a', shape: [7] },
    { name: 'b', shape: [3] },
    { name: 'c', shape: [40_001] },
    { name: 'd', shape: [16_384] },
  ];
  const weights = [37, 0.1, 2 ** 20];

  function updates(seedBase: number): NamedTensor[][] {
    return weights.map((_, u) => layout.map((entry, k) => ({ name: entry.name, shape: entry.shape, data: values(entry.shape[0], seedBase + 10 * u + k) })));
  }

  /** Computes the float64 formula written out: sum of w * x over the updates, divided by the total weight, rounded to float32. */
  function reference(input: NamedTensor[][]): Float32Array[] {
    const total = weights.reduce((a, b) => a + b, 0);
    return layout.map((entry, k) => {
      const out = new Float32Array(entry.shape[0]);
      for (let i = 0; i < out.length; i++) {
        let sum = 0;
        input.forEach((u, j) => (sum += weights[j] * u[k].data[i]));
        out[i] = sum / total;
      }
      return out;
    });
  }

  it('matches the scalar float64 formula bit for bit', () => {
    const input = updates(1);
    const accumulator = new FedAvgAccumulator(layout);
    input.forEach((u, j) => accumulator.add(u, weights[j]));
    const result = accumulator.result();
    const expected = reference(input);
    layout.forEach((entry, k) => {
      const actual = result[k].data;
      const mismatch = actual.findIndex((v, i) => !Object.is(v, expected[k][i]));
      expect(mismatch, `tensor ${entry.name}`).toBe(-1);
    });
  });

  it('starts a new sum after reset', () => {
    const accumulator = new FedAvgAccumulator(layout);
    updates(1).forEach((u, j) => accumulator.add(u, weights[j]));
    accumulator.reset();
    const second = updates(7);
    second.forEach((u, j) => accumulator.add(u, weights[j]));
    const expected = reference(second);
    const result = accumulator.result();
    layout.forEach((entry, k) => {
      const mismatch = result[k].data.findIndex((v, i) => !Object.is(v, expected[k][i]));
      expect(mismatch, `tensor ${entry.name}`).toBe(-1);
    });
    expect(accumulator.updates).toBe(3);
  });
});
