import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src';
import { fusedBatchNormGradConfig } from '../src/kernels/batch-norm-gradient';
import { maxAbs, maxAbsDifference, pseudoRandomValues } from './helpers';

async function valuesOn(backend: string, f: () => tf.Tensor): Promise<Float32Array> {
  await tf.setBackend(backend);
  const result = f();
  try {
    return (await result.data()) as Float32Array;
  } finally {
    result.dispose();
  }
}

interface ReductionCase {
  name: string;
  shape: number[];
  axis: number | number[];
  keepDims: boolean;
}

const REDUCTIONS: ReductionCase[] = [
  { name: 'batch, height and width of NHWC', shape: [3, 12, 10, 5], axis: [0, 1, 2], keepDims: false },
  { name: 'the same axes kept', shape: [3, 12, 10, 5], axis: [2, 0, 1], keepDims: true },
  { name: 'the first axis only', shape: [300, 7], axis: 0, keepDims: false },
  { name: 'trailing axes (built-in kernel)', shape: [3, 12, 10, 5], axis: [1, 2], keepDims: false },
  { name: 'a negative axis (built-in kernel)', shape: [4, 300], axis: -1, keepDims: true },
];

describe('Sum and Mean on wasm', () => {
  beforeAll(async () => {
    await initBackend({ prefer: 'wasm' });
  });

  describe.each(REDUCTIONS)('when reducing $name', (c) => {
    it('matches the cpu backend', async () => {
      const values = pseudoRandomValues(c.shape.reduce((a, b) => a * b, 1), 5).map((v) => v - 0.3);
      for (const op of [tf.sum, tf.mean]) {
        const run = () => tf.tidy(() => op(tf.tensor(values, c.shape), c.axis, c.keepDims));
        const reference = await valuesOn('cpu', run);
        const actual = await valuesOn('wasm', run);
        expect(actual.length, op.name).toBe(reference.length);
        expect(maxAbsDifference(actual, reference), op.name).toBeLessThan(1e-5 * Math.max(1, maxAbs(reference)));
      }
      await tf.setBackend('wasm');
      const shape = tf.tidy(() => tf.sum(tf.tensor(values, c.shape), c.axis, c.keepDims).shape);
      await tf.setBackend('cpu');
      const expectedShape = tf.tidy(() => tf.sum(tf.tensor(values, c.shape), c.axis, c.keepDims).shape);
      expect(shape).toEqual(expectedShape);
    });
  });
});

describe('Identity on wasm', () => {
  describe('when a tensor is cloned', () => {
    it('shares the buffer until the last copy is disposed', async () => {
      await initBackend({ prefer: 'wasm' });
      await tf.setBackend('wasm');
      const backend = tf.backend();
      const buffersBefore = backend.numDataIds();
      const x = tf.tensor2d([1.5, -2, 3.25, 0], [2, 2]);
      const clone = tf.clone(x);
      expect(backend.numDataIds()).toBe(buffersBefore + 1);

      x.dispose();
      expect(Array.from(await clone.data())).toEqual([1.5, -2, 3.25, 0]);
      expect(clone.shape).toEqual([2, 2]);
      clone.dispose();
      expect(backend.numDataIds()).toBe(buffersBefore);
    });
  });

  describe('when a string tensor is cloned', () => {
    it('copies it with the built-in kernel', async () => {
      await tf.setBackend('wasm');
      const x = tf.tensor1d(['a', 'bc']);
      const clone = tf.clone(x);
      x.dispose();
      expect(await clone.array()).toEqual(['a', 'bc']);
      clone.dispose();
    });
  });
});

/** The batch-norm formula from elementary ops, whose gradients tfjs-core defines on its own. */
function composedBatchNorm(x: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor, offset: tf.Tensor, scale: tf.Tensor): tf.Tensor {
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-3))), scale), offset);
}

describe('FusedBatchNorm gradient', () => {
  describe('when compared with the composed formula on cpu', () => {
    it('gives the same gradient for every input', async () => {
      await initBackend({ prefer: 'wasm' });
      await tf.setBackend('cpu');
      expect(tf.getGradient('FusedBatchNorm')).toBe(fusedBatchNormGradConfig);
      const shape = [2, 5, 4, 3];
      const x = tf.tensor4d(pseudoRandomValues(120, 21), shape as [number, number, number, number]);
      const weights = tf.tensor4d(pseudoRandomValues(120, 22).map((v) => v - 0.5), shape as [number, number, number, number]);
      const mean = tf.tensor1d([0.2, 0.5, -0.1]);
      const variance = tf.tensor1d([0.3, 1.2, 0.05]);
      const offset = tf.tensor1d([0.1, -0.4, 0.0]);
      const scale = tf.tensor1d([1.5, 0.7, -0.9]);
      const inputs = [x, mean, variance, offset, scale];
      const loss = (f: typeof composedBatchNorm) => (...args: tf.Tensor[]) => tf.sum(tf.mul(f(...(args as Parameters<typeof composedBatchNorm>)), weights));
      const fused = (a: tf.Tensor, m: tf.Tensor, v: tf.Tensor, o: tf.Tensor, s: tf.Tensor) =>
        tf.batchNorm(a as tf.Tensor4D, m as tf.Tensor1D, v as tf.Tensor1D, o as tf.Tensor1D, s as tf.Tensor1D, 1e-3);

      const expected = tf.grads(loss(composedBatchNorm))(inputs);
      const actual = tf.grads(loss(fused))(inputs);
      for (const [i, name] of ['x', 'mean', 'variance', 'offset', 'scale'].entries()) {
        const reference = await expected[i].data();
        expect(maxAbs(reference), name).toBeGreaterThan(0);
        expect(maxAbsDifference(await actual[i].data(), reference), name).toBeLessThan(1e-4 * Math.max(1, maxAbs(reference)));
      }
      tf.dispose([...inputs, weights, ...expected, ...actual]);
    });
  });
});

describe('Concat on wasm', () => {
  beforeAll(async () => {
    await initBackend({ prefer: 'wasm' });
  });

  // The grey-to-RGB concatenation, mixed widths, an empty input, a middle axis, and a
  // wide case that goes to the built-in kernel.
  const CONCATS: { name: string; shapes: number[][]; axis: number }[] = [
    { name: 'three one-channel slices on the last axis', shapes: [[2, 5, 4, 1], [2, 5, 4, 1], [2, 5, 4, 1]], axis: -1 },
    { name: 'widths 1, 3 and 2', shapes: [[3, 4, 1], [3, 4, 3], [3, 4, 2]], axis: 2 },
    { name: 'an empty input among others', shapes: [[3, 2], [3, 0], [3, 1]], axis: 1 },
    { name: 'a middle axis', shapes: [[2, 3, 4], [2, 1, 4]], axis: 1 },
    { name: 'rows wider than the fast path', shapes: [[2, 100], [2, 50]], axis: 1 },
  ];

  it.each(CONCATS)('matches the cpu backend for $name', async (c) => {
    const run = () => tf.tidy(() => tf.concat(c.shapes.map((shape, i) => tf.tensor(pseudoRandomValues(shape.reduce((a, b) => a * b, 1), 40 + i), shape)), c.axis));
    const reference = await valuesOn('cpu', run);
    const actual = await valuesOn('wasm', run);
    expect(reference.length).toBeGreaterThan(0);
    expect(Array.from(actual)).toEqual(Array.from(reference));
  });
});
