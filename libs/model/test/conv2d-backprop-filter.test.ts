import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../src';
import { maxAbs, maxAbsDifference, pseudoRandomValues } from './helpers';

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];

interface FilterCase {
  name: string;
  xShape: [number, number, number, number];
  filterShape: [number, number, number, number];
  strides: number | [number, number];
  pad: Pad;
}

const CASES: FilterCase[] = [
  { name: '3x3 stride 1 same', xShape: [2, 9, 9, 3], filterShape: [3, 3, 3, 4], strides: 1, pad: 'same' },
  { name: '3x3 stride 2 same', xShape: [3, 9, 9, 3], filterShape: [3, 3, 3, 5], strides: 2, pad: 'same' },
  { name: '3x3 stride 2 valid, odd size', xShape: [2, 10, 10, 4], filterShape: [3, 3, 4, 2], strides: 2, pad: 'valid' },
  { name: '7x7 stride 2 same', xShape: [2, 16, 16, 3], filterShape: [7, 7, 3, 8], strides: 2, pad: 'same' },
  { name: '7x7 stride 1 valid', xShape: [2, 11, 11, 2], filterShape: [7, 7, 2, 3], strides: 1, pad: 'valid' },
  { name: '1x1 stride 1 same', xShape: [2, 5, 5, 6], filterShape: [1, 1, 6, 4], strides: 1, pad: 'same' },
  { name: '1x1 stride 2 valid', xShape: [3, 8, 8, 4], filterShape: [1, 1, 4, 6], strides: 2, pad: 'valid' },
  { name: '1x1 stride 2 valid, odd size', xShape: [1, 7, 9, 4], filterShape: [1, 1, 4, 3], strides: 2, pad: 'valid' },
  { name: '1x1 strides 2 and 3 same', xShape: [2, 9, 10, 5], filterShape: [1, 1, 5, 2], strides: [2, 3], pad: 'same' },
  {
    name: '3x3 stride 2 explicit asymmetric',
    xShape: [2, 8, 7, 3],
    filterShape: [3, 3, 3, 4],
    strides: 2,
    pad: [[0, 0], [1, 2], [2, 1], [0, 0]],
  },
];

function outputShape(c: FilterCase): number[] {
  const info = tf.backend_util.computeConv2DInfo(c.xShape, c.filterShape, c.strides, 1, c.pad);
  return [c.xShape[0], info.outHeight, info.outWidth, c.filterShape[3]];
}

async function filterGradientOn(backend: string, c: FilterCase, x: Float32Array, dy: Float32Array): Promise<Float32Array> {
  await tf.setBackend(backend);
  const xTensor = tf.tensor4d(x, c.xShape);
  const dyTensor = tf.tensor(dy, outputShape(c));
  try {
    const result = tf.engine().runKernel(
      'Conv2DBackpropFilter',
      { x: xTensor, dy: dyTensor },
      { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: c.filterShape },
    ) as tf.Tensor;
    const values = (await result.data()) as Float32Array;
    result.dispose();
    return values;
  } finally {
    tf.dispose([xTensor, dyTensor]);
  }
}

describe('Conv2DBackpropFilter on wasm', () => {
  // These kernels are what wasm uses where the native ones are missing (no AVX2, no
  // compiler at install time), so they are tested with the native kernels turned off.
  beforeAll(async () => {
    vi.stubEnv('COVNET_NATIVE_KERNELS', '0');
    await initBackend({ prefer: 'wasm' });
  });
  afterAll(() => {
    vi.unstubAllEnvs();
  });

  describe.each(CASES)('when $name', (c) => {
    it('matches the cpu backend', async () => {
      const x = pseudoRandomValues(c.xShape.reduce((a, b) => a * b), 11).map((v) => v - 0.5);
      const dy = pseudoRandomValues(outputShape(c).reduce((a, b) => a * b), 12).map((v) => v - 0.5);
      const reference = await filterGradientOn('cpu', c, x, dy);
      const actual = await filterGradientOn('wasm', c, x, dy);
      expect(actual.length).toBe(c.filterShape.reduce((a, b) => a * b));
      expect(maxAbsDifference(actual, reference)).toBeLessThan(1e-4 * Math.max(1, maxAbs(reference)));
    });
  });

  describe('when run repeatedly', () => {
    it('leaves only its output tensor', async () => {
      await tf.setBackend('wasm');
      const x = tf.randomNormal([2, 9, 9, 3], 0, 1, 'float32', 1);
      const dy = tf.randomNormal([2, 5, 5, 4], 0, 1, 'float32', 2);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 5; i++) {
        const g = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 2, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 3, 4] }) as tf.Tensor;
        g.dispose();
      }
      expect(tf.memory().numTensors).toBe(before);
      // The inputs must survive: the kernel wraps them without taking ownership.
      expect(x.isDisposed).toBe(false);
      expect((await x.data()).length).toBe(2 * 9 * 9 * 3);
      tf.dispose([x, dy]);
    });
  });

  describe('when attributes are unsupported', () => {
    it('rejects dilation 2', async () => {
      await tf.setBackend('wasm');
      const x = tf.zeros([1, 5, 5, 1]);
      const dy = tf.zeros([1, 5, 5, 1]);
      expect(() =>
        tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 1, 1], dilations: 2 }),
      ).toThrow(/dilations \[2, 2\] are not supported/);
      tf.dispose([x, dy]);
    });

    it('rejects NCHW', async () => {
      await tf.setBackend('wasm');
      const x = tf.zeros([1, 1, 5, 5]);
      const dy = tf.zeros([1, 1, 5, 5]);
      expect(() =>
        tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'same', dataFormat: 'NCHW', filterShape: [3, 3, 1, 1] }),
      ).toThrow(/dataFormat 'NCHW' is not supported/);
      tf.dispose([x, dy]);
    });
  });
});

/** Computes the loss of a small conv net of tf ops: strided conv, BN, ReLU, max and average pooling, dense. */
function smallNetLoss(weights: Record<string, tf.Variable>, x: tf.Tensor4D): tf.Scalar {
  const conv1 = tf.conv2d(x, weights.conv1 as tf.Tensor4D, 2, 'same');
  const { mean, variance } = tf.moments(conv1, [0, 1, 2]);
  const normed = tf.batchNorm4d(conv1, mean as tf.Tensor1D, variance as tf.Tensor1D, weights.beta as tf.Tensor1D, weights.gamma as tf.Tensor1D, 1e-5);
  const pooled = tf.maxPool(tf.relu(normed), 3, 2, 'same');
  const conv2 = tf.relu(tf.conv2d(pooled, weights.conv2 as tf.Tensor4D, 1, 'valid'));
  const averaged = tf.avgPool(conv2, 2, 1, 'valid');
  const features = tf.max(tf.mean(averaged, [1, 2]), 0, true);
  const logits = tf.matMul(features, weights.dense);
  return tf.mean(tf.square(tf.sub(logits, tf.tensor2d([[1, -1, 0.5]])))) as tf.Scalar;
}

async function smallNetGradients(backend: string): Promise<Record<string, Float32Array>> {
  await tf.setBackend(backend);
  const shapes: Record<string, number[]> = { conv1: [7, 7, 3, 8], gamma: [8], beta: [8], conv2: [3, 3, 8, 6], dense: [6, 3] };
  const weights: Record<string, tf.Variable> = {};
  Object.entries(shapes).forEach(([name, shape], i) => {
    const values = pseudoRandomValues(shape.reduce((a, b) => a * b), 100 + i).map((v) => v - 0.5);
    weights[name] = tf.variable(tf.tensor(values, shape), true, `${backend}_${name}`);
  });
  const x = tf.tensor4d(pseudoRandomValues(3 * 20 * 20 * 3, 7), [3, 20, 20, 3]);
  try {
    const { value, grads } = tf.variableGrads(() => smallNetLoss(weights, x), Object.values(weights));
    const result: Record<string, Float32Array> = {};
    for (const name of Object.keys(shapes)) {
      result[name] = (await grads[`${backend}_${name}`].data()) as Float32Array;
    }
    tf.dispose([value, ...Object.values(grads)]);
    return result;
  } finally {
    tf.dispose([x, ...Object.values(weights)]);
  }
}

describe('variableGrads of a conv net on wasm', () => {
  describe('when compared with the cpu backend', () => {
    it('gives the same gradient for every weight', async () => {
      await initBackend({ prefer: 'wasm' });
      const reference = await smallNetGradients('cpu');
      const actual = await smallNetGradients('wasm');
      for (const name of Object.keys(reference)) {
        const scale = Math.max(1e-3, maxAbs(reference[name]));
        expect(maxAbs(actual[name]), name).toBeGreaterThan(0);
        expect(maxAbsDifference(actual[name], reference[name]) / scale, name).toBeLessThan(1e-3);
      }
    });
  });
});

describe('wasm gradient kernels', () => {
  describe('when COVNet layers are trained', () => {
    it('has the pooling and batch-norm kernels', async () => {
      await initBackend({ prefer: 'wasm' });
      for (const kernel of ['MaxPoolGrad', 'AvgPoolGrad', 'FusedBatchNorm', 'Conv2DBackpropInput', 'Conv2DBackpropFilter']) {
        expect(tf.getKernel(kernel, 'wasm'), kernel).toBeDefined();
      }
    });
  });
});
