import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { loadNativeKernels } from '@covnet/native-kernels';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src';
import { batchNormalization } from '../src/covnet/batch-norm-layer';
import { createAdam } from '../src/covnet/fused-adam';
import { RELU_GRAD } from '../src/kernels/relu-gradient';
import { maxAbs, maxAbsDifference, pseudoRandomValues } from './helpers';

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];
type Shape4 = [number, number, number, number];

interface ConvCase {
  name: string;
  xShape: Shape4;
  filterShape: Shape4;
  strides: number | [number, number];
  pad: Pad;
}

// ResNet geometries, odd sizes and asymmetric padding. Some sizes cross the kernels' internal
// blocks: more than 256 filter rows (one packed panel), more than 96 pixels (one row block),
// channel counts that are not multiples of 16 (one register tile), and more receptive-field
// rows than one scratch chunk has room for.
const CASES: ConvCase[] = [
  { name: '3x3 stride 1 same', xShape: [2, 9, 9, 3], filterShape: [3, 3, 3, 4], strides: 1, pad: 'same' },
  { name: '3x3 stride 2 same, odd size', xShape: [3, 9, 9, 3], filterShape: [3, 3, 3, 5], strides: 2, pad: 'same' },
  { name: '7x7 stride 2 same (the stem)', xShape: [2, 30, 30, 3], filterShape: [7, 7, 3, 8], strides: 2, pad: 'same' },
  { name: '1x1 stride 1', xShape: [2, 5, 5, 6], filterShape: [1, 1, 6, 4], strides: 1, pad: 'valid' },
  { name: '1x1 stride 2, odd size', xShape: [1, 7, 9, 4], filterShape: [1, 1, 4, 3], strides: 2, pad: 'valid' },
  { name: '3x3 strides 2 and 1', xShape: [2, 9, 8, 3], filterShape: [3, 3, 3, 2], strides: [2, 1], pad: 'same' },
  { name: '2x2 stride 3, filter narrower than the stride', xShape: [2, 10, 11, 2], filterShape: [2, 2, 2, 3], strides: 3, pad: 'valid' },
  { name: '3x3 stride 2 explicit asymmetric', xShape: [2, 8, 7, 3], filterShape: [3, 3, 3, 4], strides: 2, pad: [[0, 0], [1, 2], [2, 1], [0, 0]] },
  { name: '1x1, 300 channels in, 37 out', xShape: [2, 11, 13, 300], filterShape: [1, 1, 300, 37], strides: 1, pad: 'valid' },
  // 1M floats of scratch hold 14,563 rows of 72 values; this has 15,128.
  { name: '3x3 over 8 channels, two scratch chunks', xShape: [1, 122, 124, 8], filterShape: [3, 3, 8, 3], strides: 1, pad: 'same' },
];

const size = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);
const values = (shape: number[], seed: number): Float32Array => pseudoRandomValues(size(shape), seed).map((v) => v - 0.5);

function outputShape(c: ConvCase): Shape4 {
  const info = tf.backend_util.computeConv2DInfo(c.xShape, c.filterShape, c.strides, 1, c.pad);
  return [c.xShape[0], info.outHeight, info.outWidth, c.filterShape[3]];
}

/** Runs a kernel on `backend` and returns its output values. */
async function run(backend: string, kernel: string, inputs: Record<string, { values: Float32Array; shape: number[] }>, attrs: tf.NamedAttrMap): Promise<Float32Array> {
  await tf.setBackend(backend);
  const tensors = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, tf.tensor(v.values, v.shape)]));
  try {
    const out = tf.engine().runKernel(kernel, tensors, attrs) as tf.Tensor;
    const data = (await out.data()) as Float32Array;
    out.dispose();
    return data;
  } finally {
    tf.dispose(Object.values(tensors));
  }
}

function expectClose(actual: Float32Array, reference: Float32Array): void {
  expect(actual.length).toBe(reference.length);
  expect(maxAbs(reference)).toBeGreaterThan(0);
  // Float32 sums in another order: a few units of rounding relative to the magnitude.
  expect(maxAbsDifference(actual, reference)).toBeLessThan(2e-5 * Math.max(1, maxAbs(reference)));
}

function cpuFlags(): string[] {
  if (process.arch !== 'x64') {
    return [];
  }
  return readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1].split(/\s+/) ?? [];
}

function cpuHasAvx2Fma(): boolean {
  return cpuFlags().includes('avx2') && cpuFlags().includes('fma');
}

/** Returns the convolution builds that this CPU runs, the default one first. */
function instructionSets(): ('avx512' | 'avx2')[] {
  return cpuFlags().includes('avx512f') ? ['avx512', 'avx2'] : ['avx2'];
}

const native = loadNativeKernels();

describe('native kernels', () => {
  it('load on AVX2 CPUs, else give a reason', () => {
    // /proc/cpuinfo is read independently of the addon's own CPU check.
    if (process.env.COVNET_NATIVE_KERNELS === '0') {
      expect(native.kernels).toBeNull();
      expect(native.reason).toBe('COVNET_NATIVE_KERNELS=0 turns them off');
    } else if (cpuHasAvx2Fma()) {
      expect(native.reason).toBeUndefined();
      expect(native.kernels).not.toBeNull();
    } else {
      expect(native.kernels).toBeNull();
      expect(native.reason).toMatch(/AVX2|x64|not built/);
    }
  });
});

describe.runIf(native.kernels !== null)('native kernels on wasm', () => {
  beforeAll(async () => {
    const choice = await initBackend({ prefer: 'wasm' });
    expect(choice.convolutions?.kind).toBe('native-avx2');
    // AVX-512 runs where the CPU has it, unless COVNET_NATIVE_KERNELS=avx2 keeps AVX2.
    const expected = process.env.COVNET_NATIVE_KERNELS === 'avx2' ? 'avx2' : instructionSets()[0];
    expect(choice.convolutions?.instructions).toBe(expected);
    expect(choice.reason).toContain(`native kernels with ${expected === 'avx512' ? 'AVX-512' : 'AVX2'}`);
  });

  // Both builds of the convolutions run where the CPU has AVX-512; /proc/cpuinfo is read
  // independently of the add-on's own check.
  describe.each(instructionSets())('with %s convolutions', (instructions) => {
    beforeAll(() => native.kernels!.useConvolutionInstructions(instructions));
    afterAll(() => native.kernels!.useConvolutionInstructions(instructionSets()[0]));

    describe.each(CASES)('when $name', (c) => {
      const x = values(c.xShape, 1);
      const filter = values(c.filterShape, 2);
      const dy = values(outputShape(c), 3);
      const bias = values([c.filterShape[3]], 4);

      it('Conv2D matches the cpu backend', async () => {
        const inputs = { x: { values: x, shape: c.xShape }, filter: { values: filter, shape: c.filterShape } };
        const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dilations: 1 };
        expectClose(await run('wasm', 'Conv2D', inputs, attrs), await run('cpu', 'Conv2D', inputs, attrs));
      });

      it('FusedConv2D with bias and relu matches the cpu backend', async () => {
        const inputs = { x: { values: x, shape: c.xShape }, filter: { values: filter, shape: c.filterShape }, bias: { values: bias, shape: [c.filterShape[3]] } };
        const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dilations: 1, activation: 'relu' };
        const reference = await run('cpu', 'FusedConv2D', inputs, attrs);
        // relu really clipped something, so the activation is exercised.
        expect(reference.some((v) => v === 0)).toBe(true);
        expectClose(await run('wasm', 'FusedConv2D', inputs, attrs), reference);
      });

      it('Conv2DBackpropInput matches the cpu backend', async () => {
        const inputs = { dy: { values: dy, shape: outputShape(c) }, filter: { values: filter, shape: c.filterShape } };
        const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', inputShape: c.xShape };
        expectClose(await run('wasm', 'Conv2DBackpropInput', inputs, attrs), await run('cpu', 'Conv2DBackpropInput', inputs, attrs));
      });

      it('Conv2DBackpropFilter matches the cpu backend', async () => {
        const inputs = { x: { values: x, shape: c.xShape }, dy: { values: dy, shape: outputShape(c) } };
        const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: c.filterShape };
        expectClose(await run('wasm', 'Conv2DBackpropFilter', inputs, attrs), await run('cpu', 'Conv2DBackpropFilter', inputs, attrs));
      });
    });
  });

  describe.runIf(instructionSets().includes('avx512'))('AVX-512 against AVX2', () => {
    afterAll(() => native.kernels!.useConvolutionInstructions('avx512'));

    it.each(CASES)('gives the same bits when $name', async (c) => {
      const inputs = {
        forward: { x: { values: values(c.xShape, 1), shape: c.xShape }, filter: { values: values(c.filterShape, 2), shape: c.filterShape } },
        input: { dy: { values: values(outputShape(c), 3), shape: outputShape(c) }, filter: { values: values(c.filterShape, 2), shape: c.filterShape } },
        filter: { x: { values: values(c.xShape, 1), shape: c.xShape }, dy: { values: values(outputShape(c), 3), shape: outputShape(c) } },
      };
      const runAll = async () => [
        await run('wasm', 'Conv2D', inputs.forward, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dilations: 1 }),
        await run('wasm', 'Conv2DBackpropInput', inputs.input, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', inputShape: c.xShape }),
        await run('wasm', 'Conv2DBackpropFilter', inputs.filter, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: c.filterShape }),
      ];
      native.kernels!.useConvolutionInstructions('avx2');
      const narrow = await runAll();
      native.kernels!.useConvolutionInstructions('avx512');
      const wide = await runAll();
      narrow.forEach((values, k) => {
        expect(maxAbs(values)).toBeGreaterThan(0);
        expect(maxAbsDifference(wide[k], values), ['Conv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter'][k]).toBe(0);
      });
    });
  });

  it('fused relu keeps NaN like cpu', async () => {
    const c = CASES[0];
    const x = values(c.xShape, 7);
    x[0] = Number.NaN;
    const inputs = { x: { values: x, shape: c.xShape }, filter: { values: values(c.filterShape, 8), shape: c.filterShape } };
    const attrs = { strides: 1, pad: 'same', dataFormat: 'NHWC', dilations: 1, activation: 'relu' };
    const reference = await run('cpu', 'FusedConv2D', inputs, attrs);
    const nanAt = (v: Float32Array): number[] => [...v.keys()].filter((i) => Number.isNaN(v[i]));
    // The NaN pixel reaches every output channel of the pixels around it.
    expect(nanAt(reference).length).toBeGreaterThan(0);
    expect(nanAt(await run('wasm', 'FusedConv2D', inputs, attrs))).toEqual(nanAt(reference));
  });

  it('empty convolutions match cpu', async () => {
    const empties: [string, Shape4, Shape4][] = [
      ['no images', [0, 4, 4, 2], [3, 3, 2, 3]],
      ['no output channels', [1, 4, 4, 2], [3, 3, 2, 0]],
      ['no input channels', [1, 4, 4, 0], [3, 3, 0, 3]],
    ];
    for (const [name, xShape, filterShape] of empties) {
      const outputs: Record<string, { shape: number[]; values: number[] }[]> = {};
      for (const backend of ['cpu', 'wasm']) {
        await tf.setBackend(backend);
        const x = tf.tensor4d(values(xShape, 9), xShape);
        const filter = tf.tensor4d(values(filterShape, 10), filterShape);
        const y = tf.conv2d(x, filter, 1, 'same');
        // Half the bias negative, so that relu clips some of it.
        const bias = tf.tensor1d(values([filterShape[3]], 11));
        const fused = tf.fused.conv2d({ x, filter, strides: 1, pad: 'same', bias, activation: 'relu' });
        const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same').sum())([x, filter]);
        outputs[backend] = [y, fused, dx, dw].map((t) => ({ shape: t.shape, values: Array.from(t.dataSync()) }));
        tf.dispose([x, filter, y, bias, fused, dx, dw]);
      }
      expect(outputs['wasm'], name).toEqual(outputs['cpu']);
    }
  });

  it('empty pool gradient and batch norm match cpu', async () => {
    const outputs: Record<string, { shape: number[]; values: number[] }[]> = {};
    for (const backend of ['cpu', 'wasm']) {
      await tf.setBackend(backend);
      const results = tf.tidy(() => {
        const x = tf.zeros([0, 4, 4, 3]);
        const poolGrad = tf.grad((a: tf.Tensor) => tf.maxPool(a as tf.Tensor4D, 2, 2, 'same').sum())(x);
        const fixed = tf.batchNorm(x, tf.zeros([3]), tf.ones([3]), tf.zeros([3]), tf.ones([3]), 1e-3);
        const training = batchNormalization({}).apply(x, { training: true }) as tf.Tensor;
        return [poolGrad, fixed, training];
      });
      outputs[backend] = results.map((t) => ({ shape: t.shape, values: Array.from(t.dataSync()) }));
      tf.dispose(results);
    }
    expect(outputs['wasm']).toEqual(outputs['cpu']);
  });

  it('stride near 2^31 reads only padding', () => {
    // Output row 2 starts 2 * (2^31 - 1) rows down, past the one input row. So only the
    // first output reads the input, through the filter's first row: 1 * 10.
    const y = new Float32Array(3);
    native.kernels!.conv2dForward(Float32Array.of(1), Float32Array.of(10, 20, 30), null, y, Int32Array.from([1, 1, 1, 1, 3, 1, 1, 3, 1, 2 ** 31 - 1, 1, 0, 0]), 0);
    expect(Array.from(y)).toEqual([10, 0, 0]);
    // The same window in a max pool: only the first output's gradient reaches the input.
    const dx = new Float32Array(1);
    native.kernels!.maxPoolGrad(Float32Array.of(1, 1, 1), Float32Array.of(5), dx, Int32Array.from([1, 1, 1, 1, 3, 1, 3, 1, 2 ** 31 - 1, 1, 0, 0]));
    expect(Array.from(dx)).toEqual([1]);
  });

  it('falls back to the wasm kernel for an activation it does not fuse', async () => {
    const c = CASES[0];
    const inputs = { x: { values: values(c.xShape, 5), shape: c.xShape }, filter: { values: values(c.filterShape, 6), shape: c.filterShape } };
    const attrs = { strides: 1, pad: 'same', dataFormat: 'NHWC', dilations: 1, activation: 'sigmoid' };
    expectClose(await run('wasm', 'FusedConv2D', inputs, attrs), await run('cpu', 'FusedConv2D', inputs, attrs));
  });

  it('rejects arrays shorter than the shape says, naming the argument', () => {
    const shape = Int32Array.from([1, 4, 4, 2, 4, 4, 3, 3, 3, 1, 1, 1, 1]);
    expect(() => native.kernels!.conv2dForward(new Float32Array(31), new Float32Array(54), null, new Float32Array(48), shape, 0)).toThrow(/x holds 31 values, the convolution needs 32/);
    expect(() => native.kernels!.conv2dBackpropFilter(new Float32Array(32), new Float32Array(48), new Float32Array(53), shape)).toThrow(/dw holds 53 values/);
    expect(() => native.kernels!.conv2dForward(new Float32Array(32), new Float32Array(54), null, new Float32Array(48), Int32Array.from([1, 4]), 0)).toThrow(/Int32Array of 13 values/);
    const backpropInput = native.kernels!.conv2dBackpropInput as unknown as (...args: unknown[]) => void;
    expect(() => backpropInput(new Float32Array(1))).toThrow(/conv2dBackpropInput\(dy, filter, dx, shape\) takes 4 arguments, not 1/);
  });

  it('rejects shapes whose sizes overflow 32 bits', () => {
    // 65536^4 wraps to 0 in 64 bits, so a length check on the wrapped product would pass.
    const huge = Int32Array.from([65536, 65536, 65536, 65536, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
    const four = (): Float32Array => new Float32Array(4);
    expect(() => native.kernels!.conv2dForward(four(), four(), null, four(), huge, 0)).toThrow(/more than 2\^31 - 1 values/);
    expect(() => native.kernels!.batchNormTraining(2 ** 40, 4, 1e-3, four(), four(), four(), four(), four(), four())).toThrow(/rows times channels/);
    const hugePool = Int32Array.from([65536, 65536, 65536, 65536, 1, 1, 1, 1, 1, 1, 0, 0]);
    expect(() => native.kernels!.maxPoolGrad(four(), four(), four(), hugePool)).toThrow(/more than 2\^31 - 1 values/);
  });

  describe('Adam', () => {
    const shapes = [[3, 5], [7]];
    const initial = shapes.map((shape, i) => values(shape, 50 + i));
    const gradientsOf = (step: number) => shapes.map((shape, i) => values(shape, 60 + 10 * step + i).map((g) => g * (step + 1)));

    /** Weights after three steps of createAdam on `backend`. */
    async function threeSteps(backend: string, kind: 'fused' | 'tfjs'): Promise<Float32Array[]> {
      await tf.setBackend(backend);
      const variables = shapes.map((shape, i) => tf.variable(tf.tensor(initial[i], shape), true, `adam_${backend}_${kind}_${i}`));
      const optimizer = kind === 'fused' ? createAdam(0.01) : tf.train.adam(0.01);
      for (let step = 0; step < 3; step++) {
        const gradients = gradientsOf(step);
        tf.tidy(() => optimizer.applyGradients(Object.fromEntries(variables.map((v, i) => [v.name, tf.tensor(gradients[i], shapes[i])])) as never));
      }
      const weights = variables.map((v) => v.dataSync() as Float32Array);
      optimizer.dispose();
      tf.dispose(variables);
      return weights;
    }

    it('matches tf.train.adam on the cpu backend', async () => {
      const reference = await threeSteps('cpu', 'tfjs');
      const fused = await threeSteps('wasm', 'fused');
      for (let i = 0; i < shapes.length; i++) {
        expect(maxAbsDifference(fused[i], initial[i])).toBeGreaterThan(0.01);
        expect(maxAbsDifference(fused[i], reference[i])).toBeLessThan(1e-6);
      }
    });

    it('matches the Adam formulas in float64', async () => {
      const fused = await threeSteps('wasm', 'fused');
      for (let i = 0; i < shapes.length; i++) {
        const w = Float64Array.from(initial[i]);
        const m = new Float64Array(w.length);
        const v = new Float64Array(w.length);
        for (let step = 0; step < 3; step++) {
          const g = gradientsOf(step)[i];
          for (let k = 0; k < w.length; k++) {
            m[k] = 0.9 * m[k] + 0.1 * g[k];
            v[k] = 0.999 * v[k] + 0.001 * g[k] * g[k];
            w[k] -= (0.01 * (m[k] / (1 - 0.9 ** (step + 1)))) / (Math.sqrt(v[k] / (1 - 0.999 ** (step + 1))) + 1e-7);
          }
        }
        expect(maxAbsDifference(fused[i], w)).toBeLessThan(1e-6);
      }
    });

    it('is used where the kernel is registered', async () => {
      await tf.setBackend('wasm');
      const optimizer = createAdam(0.01);
      expect(optimizer).not.toBeInstanceOf(tf.AdamOptimizer);
      optimizer.dispose();
    });

    describe('with the mean of gradient parts', () => {
      // Sizes around the kernel's 4096-value chunks and across the split between threads.
      const counts = [1, 4095, 4096, 3 * 4096 + 17];
      const parts = (count: number, n: number, seed: number) => Array.from({ length: n }, (_, p) => values([count], seed + p).map((g) => g * (p + 1)));

      /** Weights after three steps, each either with the mean given as a tensor or with its parts. */
      async function threeMeanSteps(count: number, n: number, kind: 'tensor' | 'parts'): Promise<Float32Array> {
        await tf.setBackend('wasm');
        const variable = tf.variable(tf.tensor(values([count], 70)), true, `adam_mean_${kind}_${count}_${n}`);
        const optimizer = createAdam(0.01);
        for (let step = 0; step < 3; step++) {
          const gradient = parts(count, n, 80 + 10 * step);
          if (kind === 'parts') {
            optimizer.applyMeanGradients!(new Map([[variable.name, gradient]]), 3);
          } else {
            // The mean as training computed it before: float32 sums with tf.add, then tf.div.
            tf.tidy(() => optimizer.applyGradients({ [variable.name]: tf.div(tf.addN(gradient.map((g) => tf.tensor(g))), 3) }));
          }
        }
        const weights = variable.dataSync() as Float32Array;
        optimizer.dispose();
        variable.dispose();
        return weights;
      }

      it.each(counts.flatMap((count) => [1, 2, 3].map((n) => ({ count, n }))))('gives the bits of the tensor path for $count values in $n parts', async ({ count, n }) => {
        const withParts = await threeMeanSteps(count, n, 'parts');
        const withTensor = await threeMeanSteps(count, n, 'tensor');
        expect(maxAbsDifference(withParts, values([count], 70))).toBeGreaterThan(0.01);
        expect(maxAbsDifference(withParts, withTensor)).toBe(0);
      });

      it('matches the Adam formulas in float64 on 2 threads and on 3', () => {
        const count = 3 * 4096 + 17;
        const w0 = values([count], 90);
        const g = parts(count, 2, 91);
        for (const threads of [2, 3]) {
          const out = [0, 1, 2].map(() => new Float32Array(count));
          native.kernels!.adamStepMean(w0, new Float32Array(count), new Float32Array(count), g, 4, out[0], out[1], out[2], 0.01, 0.9, 0.999, 1e-7, 0.1, 0.001, threads);
          const expected = Float64Array.from(w0, (w, k) => {
            const mean = (g[0][k] + g[1][k]) / 4;
            return w - (0.01 * ((0.1 * mean) / 0.1)) / (Math.sqrt((0.001 * mean * mean) / 0.001) + 1e-7);
          });
          expect(maxAbsDifference(out[0], expected), `${threads} threads`).toBeLessThan(1e-6);
          expect(maxAbsDifference(out[0], w0)).toBeGreaterThan(0.005);
        }
      });

      it('names the part that does not fit and rejects bad counts', () => {
        const f = (n: number) => new Float32Array(n);
        const call = (parts: unknown, divisor = 2, threads = 2) =>
          native.kernels!.adamStepMean(f(8), f(8), f(8), parts as Float32Array[], divisor, f(8), f(8), f(8), 0.01, 0.9, 0.999, 1e-7, 0.1, 0.001, threads);
        expect(() => call([f(8), f(7)])).toThrow('parts[1] holds 7 values, w holds 8');
        expect(() => call([f(8), new Float64Array(8)])).toThrow('parts[1] must be a Float32Array');
        expect(() => call([])).toThrow(/parts must be an array of 1 to/);
        expect(() => call(f(8))).toThrow(/parts must be an array of 1 to/);
        expect(() => call([f(8)], 0)).toThrow('divisor must be a positive finite number');
        expect(() => call([f(8)], 2, 0)).toThrow(/threads must be an integer from 1/);
      });
    });
  });

  it('Relu gradient gives the bits of the cpu backend', async () => {
    // Positive, negative and zero inputs, NaN, and gradients of both signs, so that the
    // products include -0 and NaN.
    const x = values([3, 5, 7, 4], 40).map((v, i) => (i % 9 === 0 ? 0 : v));
    x[5] = Number.NaN;
    const dy = values([3, 5, 7, 4], 41);
    dy[7] = Number.NaN;
    const gradients: Float32Array[] = [];
    for (const backend of ['cpu', 'wasm']) {
      await tf.setBackend(backend);
      const input = tf.tensor4d(x, [3, 5, 7, 4]);
      const upstream = tf.tensor4d(dy, [3, 5, 7, 4]);
      const dx = tf.grad((xIn: tf.Tensor) => tf.relu(xIn))(input, upstream);
      gradients.push((await dx.data()) as Float32Array);
      tf.dispose([input, upstream, dx]);
    }
    expect(tf.getKernel(RELU_GRAD, 'wasm')).toBeDefined();
    expect(Number.isNaN(gradients[0][5])).toBe(true);
    expect(gradients[0].some((v) => Object.is(v, -0))).toBe(true);
    expect(Array.from(gradients[1], (v) => (Number.isNaN(v) ? 'NaN' : Object.is(v, -0) ? '-0' : v))).toEqual(
      Array.from(gradients[0], (v) => (Number.isNaN(v) ? 'NaN' : Object.is(v, -0) ? '-0' : v)),
    );
  });

  describe('MaxPoolGrad', () => {
    // ResNet's stem pool (3x3, stride 2, padding 1 as 'same' on an even size), an odd size,
    // and a window with ties: relu outputs are often exactly 0.
    const pools = [
      { name: '3x3 stride 2 same', shape: [2, 12, 12, 5] as Shape4, filterSize: 3, strides: 2, pad: 'same' as const, ties: false },
      { name: '2x2 stride 2 valid, odd size', shape: [1, 7, 9, 3] as Shape4, filterSize: 2, strides: 2, pad: 'valid' as const, ties: false },
      { name: '3x3 stride 2 same, many ties', shape: [2, 8, 8, 4] as Shape4, filterSize: 3, strides: 2, pad: 'same' as const, ties: true },
    ];
    it.each(pools)('matches the cpu backend when $name', async (p) => {
      const x = values(p.shape, 21).map((v) => (p.ties ? Math.max(0, Math.round(v * 4) / 4) : v));
      const reference: Float32Array[] = [];
      // Each output's gradient lands on exactly one input, so the two agree exactly.
      for (const backend of ['cpu', 'wasm']) {
        await tf.setBackend(backend);
        const input = tf.tensor4d(x, p.shape);
        // Distinct weights per output, so a gradient sent to the wrong input shows.
        const pooledShape = tf.maxPool(input, p.filterSize, p.strides, p.pad).shape;
        const weights = tf.range(1, 1 + size(pooledShape)).reshape(pooledShape);
        const dx = tf.grad((xIn: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(xIn as tf.Tensor4D, p.filterSize, p.strides, p.pad), weights)))(input);
        reference.push((await dx.data()) as Float32Array);
        tf.dispose([input, weights, dx]);
      }
      expect(maxAbs(reference[0])).toBeGreaterThan(0);
      expect(maxAbsDifference(reference[1], reference[0])).toBe(0);
    });
  });

  it('FusedBatchNorm with fixed statistics matches the cpu backend', async () => {
    const shape: Shape4 = [2, 6, 5, 7];
    const inputs = {
      x: { values: values(shape, 31), shape },
      mean: { values: values([7], 32), shape: [7] },
      variance: { values: pseudoRandomValues(7, 33).map((v) => 0.1 + v), shape: [7] },
      offset: { values: values([7], 34), shape: [7] },
      scale: { values: values([7], 35), shape: [7] },
    };
    const attrs = { varianceEpsilon: 1e-3 };
    expectClose(await run('wasm', 'FusedBatchNorm', inputs, attrs), await run('cpu', 'FusedBatchNorm', inputs, attrs));
    const { offset: _offset, scale: _scale, ...withoutAffine } = inputs;
    expectClose(await run('wasm', 'FusedBatchNorm', withoutAffine, attrs), await run('cpu', 'FusedBatchNorm', withoutAffine, attrs));
  });

  describe('batch normalisation in training mode', () => {
    const xShape: Shape4 = [3, 5, 7, 6];
    // A large mean against a small spread, where a one-pass variance would lose digits.
    const x = pseudoRandomValues(size(xShape), 7).map((v, i) => 40 + (i % 6) + 0.1 * v);
    const dy = values(xShape, 8);
    const gamma = pseudoRandomValues(6, 9).map((v) => 0.5 + v);
    const beta = values([6], 10);

    /** Output, gradients and moving statistics of one training-mode call of `layer`. */
    async function trainingCall(backend: string, layer: tf.layers.Layer) {
      await tf.setBackend(backend);
      const input = tf.tensor4d(x, xShape);
      layer.build(xShape);
      layer.setWeights([tf.tensor1d(gamma), tf.tensor1d(beta), tf.fill([6], 0.25), tf.fill([6], 2)]);
      const upstream = tf.tensor4d(dy, xShape);
      const [gammaVariable, betaVariable] = layer.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val);
      const f = (xIn: tf.Tensor): tf.Scalar => tf.sum(tf.mul(layer.apply(xIn, { training: true }) as tf.Tensor, upstream));
      const y = (await (layer.apply(input, { training: true }) as tf.Tensor).data()) as Float32Array;
      const { grads } = tf.variableGrads(() => f(input), [gammaVariable, betaVariable]);
      const dx = (await tf.grad(f)(input).data()) as Float32Array;
      const moving = layer.getWeights().slice(2).map((w) => w.dataSync() as Float32Array);
      return { y, dx, dgamma: grads[gammaVariable.name].dataSync() as Float32Array, dbeta: grads[betaVariable.name].dataSync() as Float32Array, moving };
    }

    /** Computes the textbook formulas in float64, as an independent reference. */
    function handReference(channels: number, epsilon: number) {
      const rows = x.length / channels;
      const y = new Float64Array(x.length);
      const dx = new Float64Array(x.length);
      const dgamma = new Float64Array(channels);
      const dbeta = new Float64Array(channels);
      for (let c = 0; c < channels; c++) {
        let mean = 0;
        for (let r = 0; r < rows; r++) mean += x[r * channels + c] / rows;
        let variance = 0;
        for (let r = 0; r < rows; r++) variance += (x[r * channels + c] - mean) ** 2 / rows;
        const invStd = 1 / Math.sqrt(variance + epsilon);
        for (let r = 0; r < rows; r++) {
          const i = r * channels + c;
          y[i] = gamma[c] * (x[i] - mean) * invStd + beta[c];
          dbeta[c] += dy[i];
          dgamma[c] += dy[i] * (x[i] - mean) * invStd;
        }
        for (let r = 0; r < rows; r++) {
          const i = r * channels + c;
          const xHat = (x[i] - mean) * invStd;
          dx[i] = gamma[c] * invStd * (dy[i] - dbeta[c] / rows - (xHat * dgamma[c]) / rows);
        }
      }
      return { y, dx, dgamma, dbeta };
    }

    it('matches the textbook formulas, and the stock layer in its moving statistics', async () => {
      const args = { axis: -1, momentum: 0.9, epsilon: 1e-5 };
      const fused = await trainingCall('wasm', batchNormalization(args));
      const hand = handReference(6, args.epsilon);
      for (const key of ['y', 'dx', 'dgamma', 'dbeta'] as const) {
        expect(maxAbs(hand[key]), key).toBeGreaterThan(0);
        expect(maxAbsDifference(fused[key], hand[key]), key).toBeLessThan(2e-5 * Math.max(1, maxAbs(hand[key])));
      }
      // tfjs's own layer on the cpu backend computes in float32 throughout, so it agrees less
      // closely on this input with a large mean. Its moving statistics follow the same rule.
      const stock = await trainingCall('cpu', tf.layers.batchNormalization(args));
      expect(maxAbsDifference(fused.y, stock.y)).toBeLessThan(1e-3);
      expect(maxAbsDifference(fused.moving[0], stock.moving[0])).toBeLessThan(1e-4);
      expect(maxAbsDifference(fused.moving[1], stock.moving[1])).toBeLessThan(1e-5);
      expect(maxAbsDifference(fused.moving[0], [0.25, 0.25, 0.25, 0.25, 0.25, 0.25])).toBeGreaterThan(1);
    });

    it('leaves no more tensors behind than the stock layer', async () => {
      await tf.setBackend('wasm');
      // tfjs-layers' own layer keeps one tensor per training call made under a gradient
      // tape (its moving-statistics write); the fused one must not add to that.
      const growth = (layer: tf.layers.Layer): number => {
        const input = tf.tensor4d(x, xShape);
        layer.apply(input, { training: true });
        const before = tf.memory().numTensors;
        for (let i = 0; i < 3; i++) {
          tf.tidy(() => tf.grad((xIn: tf.Tensor) => tf.sum(layer.apply(xIn, { training: true }) as tf.Tensor))(input));
        }
        const grown = tf.memory().numTensors - before;
        input.dispose();
        return grown;
      };
      const stock = growth(tf.layers.batchNormalization({ axis: -1 }));
      expect(growth(batchNormalization({ axis: -1 }))).toBe(stock);
    });
  });
});
