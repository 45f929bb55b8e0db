import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../src';
import { conv2dBackpropInputWasmConfig } from '../src/kernels/conv2d-backprop-input';
import { maxAbs, maxAbsDifference, pseudoRandomValues } from './helpers';

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];

interface InputCase {
  name: string;
  xShape: [number, number, number, number];
  filterShape: [number, number, number, number];
  strides: number | [number, number];
  pad: Pad;
}

// Every convolution geometry of the ResNets and the small backbone, plus odd sizes and
// asymmetric padding where a stride does not divide the input.
const CASES: InputCase[] = [
  { name: '3x3 stride 1 same', xShape: [2, 9, 9, 3], filterShape: [3, 3, 3, 4], strides: 1, pad: 'same' },
  { name: '3x3 stride 2 same, odd size', xShape: [3, 9, 9, 3], filterShape: [3, 3, 3, 5], strides: 2, pad: 'same' },
  { name: '3x3 stride 2 valid, even size', xShape: [2, 10, 10, 4], filterShape: [3, 3, 4, 2], strides: 2, pad: 'valid' },
  { name: '7x7 stride 2 valid after padding 3', xShape: [2, 22, 22, 3], filterShape: [7, 7, 3, 8], strides: 2, pad: 'valid' },
  { name: '7x7 stride 1 valid', xShape: [2, 11, 11, 2], filterShape: [7, 7, 2, 3], strides: 1, pad: 'valid' },
  { name: '1x1 stride 1', xShape: [2, 5, 5, 6], filterShape: [1, 1, 6, 4], strides: 1, pad: 'valid' },
  { name: '1x1 stride 2, even size', xShape: [3, 8, 8, 4], filterShape: [1, 1, 4, 6], strides: 2, pad: 'valid' },
  { name: '1x1 stride 2, odd size', xShape: [1, 7, 9, 4], filterShape: [1, 1, 4, 3], strides: 2, pad: 'valid' },
  { name: '3x3 strides 2 and 1', xShape: [2, 9, 8, 3], filterShape: [3, 3, 3, 2], strides: [2, 1], pad: 'same' },
  // Some input pixels fall between the taps of every window, so their gradient is 0.
  { name: '2x2 stride 3, filter narrower than the stride', xShape: [2, 10, 11, 2], filterShape: [2, 2, 2, 3], strides: 3, pad: 'valid' },
  {
    name: '3x3 stride 2 explicit asymmetric',
    xShape: [2, 8, 7, 3],
    filterShape: [3, 3, 3, 4],
    strides: 2,
    pad: [[0, 0], [1, 2], [2, 1], [0, 0]],
  },
];

function outputShape(c: InputCase): number[] {
  const info = tf.backend_util.computeConv2DInfo(c.xShape, c.filterShape, c.strides, 1, c.pad);
  return [c.xShape[0], info.outHeight, info.outWidth, c.filterShape[3]];
}

async function inputGradientOn(backend: string, c: InputCase, dy: Float32Array, filter: Float32Array): Promise<Float32Array> {
  await tf.setBackend(backend);
  const dyTensor = tf.tensor(dy, outputShape(c));
  const filterTensor = tf.tensor4d(filter, c.filterShape);
  try {
    const result = tf.engine().runKernel(
      'Conv2DBackpropInput',
      { dy: dyTensor, filter: filterTensor },
      { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', inputShape: c.xShape },
    ) as tf.Tensor;
    const values = (await result.data()) as Float32Array;
    result.dispose();
    return values;
  } finally {
    tf.dispose([dyTensor, filterTensor]);
  }
}

describe('Conv2DBackpropInput on wasm', () => {
  // These kernels are what wasm uses where the native ones are missing (no AVX2, no
  // compiler at install time), so they are tested with the native kernels turned off.
  beforeAll(async () => {
    vi.stubEnv('COVNET_NATIVE_KERNELS', '0');
    await initBackend({ prefer: 'wasm' });
  });
  afterAll(() => {
    vi.unstubAllEnvs();
  });

  it('is the XNNPACK-based kernel', () => {
    expect(tf.getKernel('Conv2DBackpropInput', 'wasm')?.kernelFunc).toBe(conv2dBackpropInputWasmConfig.kernelFunc);
  });

  describe.each(CASES)('when $name', (c) => {
    it('matches the cpu backend', async () => {
      const dy = pseudoRandomValues(outputShape(c).reduce((a, b) => a * b, 1), 11).map((v) => v - 0.5);
      const filter = pseudoRandomValues(c.filterShape.reduce((a, b) => a * b, 1), 12).map((v) => v - 0.5);
      const reference = await inputGradientOn('cpu', c, dy, filter);
      const actual = await inputGradientOn('wasm', c, dy, filter);
      expect(actual.length).toBe(reference.length);
      expect(maxAbs(reference)).toBeGreaterThan(0);
      expect(maxAbsDifference(actual, reference)).toBeLessThan(1e-5 * Math.max(1, maxAbs(reference)));
    });
  });

  describe('when run repeatedly', () => {
    it('leaves only its output tensor', async () => {
      await tf.setBackend('wasm');
      const c = CASES[1];
      const dy = tf.tensor(pseudoRandomValues(outputShape(c).reduce((a, b) => a * b, 1), 3), outputShape(c));
      const filter = tf.tensor4d(pseudoRandomValues(c.filterShape.reduce((a, b) => a * b, 1), 4), c.filterShape);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 5; i++) {
        const dx = tf.engine().runKernel('Conv2DBackpropInput', { dy, filter }, { strides: 2, pad: 'same', inputShape: c.xShape }) as tf.Tensor;
        expect(tf.memory().numTensors).toBe(before + 1);
        dx.dispose();
      }
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([dy, filter]);
    });
  });
});
