import * as tf from '@tensorflow/tfjs';
import { loadNativeKernels } from '@covnet/native-kernels';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCovnet, initBackend } from '../src';
import { buildCovnetModel } from '../src/covnet/covnet';
import { ADAM_MEAN_STEP } from '../src/covnet/fused-adam';
import { shardGradients, type TrainHyperParameters } from '../src/covnet/training';
import { GradientWorkerPool } from '../src/parallel/gradient-pool';
import { maxAbs, maxAbsDifference, syntheticExam } from './helpers';

const SETUP = { backbone: 'small' as const, inputSize: 32, seed: 3 };
const exams = [0, 1, 2, 1].map((label, i) => syntheticExam(label as 0 | 1 | 2, 2 + (i % 2), 32, 80 + i));

describe('GradientWorkerPool', () => {
  let pool: GradientWorkerPool;

  beforeAll(async () => {
    await initBackend({ prefer: 'wasm' });
    pool = await GradientWorkerPool.start(2, SETUP);
  });

  afterAll(async () => {
    await pool.close();
  });

  describe('when two workers take one share each', () => {
    it('matches each share computed on cpu', async () => {
      const shares = [exams.slice(0, 2), exams.slice(2)];
      await tf.setBackend('cpu');
      const reference = buildCovnetModel(SETUP);
      const weights = reference.weights.map((w) => new Float32Array(w.read().dataSync()));
      // The gradients are views of the workers' buffers, so they are copied out.
      const results = await pool.gradients(weights, shares, (replies) => replies.map((r) => ({ ...r, gradients: r.gradients.map((g) => g.slice()) })));

      for (const [i, share] of shares.entries()) {
        // A fresh cpu replica per share, because a step also moves its BN statistics.
        const replica = buildCovnetModel(SETUP);
        const expected = await shardGradients(replica, share);
        expect(results[i].lossSum).toBeCloseTo(expected.lossSum, 4);
        expected.gradients.forEach((g, k) => {
          const scale = Math.max(1e-3, maxAbs(g));
          expect(maxAbsDifference(results[i].gradients[k], g) / scale, `share ${i} tensor ${k}`).toBeLessThan(1e-3);
        });
        replica.nonTrainableWeights.forEach((w, k) => {
          expect(maxAbsDifference(results[i].movingStatistics[k], w.read().dataSync()), `share ${i} statistic ${k}`).toBeLessThan(1e-4);
        });
        replica.dispose();
      }
      reference.dispose();
      await tf.setBackend('wasm');
    });
  });

  describe('when a share has an invalid exam', () => {
    it('rejects the request with the worker error', async () => {
      const weights = buildCovnetModel(SETUP).weights.map((w) => new Float32Array(w.read().dataSync()));
      const broken = { input: { slices: 2, size: 32, data: new Float32Array(5) }, label: 0 as const };
      await expect(pool.gradients(weights, [[broken]], () => null)).rejects.toThrow(/gradient worker failed/);
    });
  });

  describe('when the weights do not fit the workers\' model', () => {
    it('rejects the request and names the count of values', async () => {
      const weights = buildCovnetModel(SETUP).weights.map((w) => new Float32Array(w.read().dataSync()));
      const total = weights.reduce((sum, w) => sum + w.length, 0);
      await expect(pool.gradients(weights.slice(1), [exams.slice(0, 1)], () => null)).rejects.toThrow(
        `the shared weights hold ${total - weights[0].length} float32 values, the model has ${total}`,
      );
    });
  });

  describe('when a second request comes before the first has finished', () => {
    it('rejects the second and completes the first', async () => {
      const weights = buildCovnetModel(SETUP).weights.map((w) => new Float32Array(w.read().dataSync()));
      const first = pool.gradients(weights, [exams.slice(0, 1)], (results) => results[0].lossSum);
      await expect(pool.features(weights, [exams[1].input])).rejects.toThrow(/busy with another request/);
      expect(Number.isFinite(await first)).toBe(true);
    });
  });
});

describe('Covnet.trainLocal with workers', () => {
  it('lowers the loss and leaves no tensors', async () => {
    await initBackend({ prefer: 'wasm' });
    const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 2 });
    try {
      const first = await model.trainLocal(exams, { epochs: 1, learningRate: 3e-3, batchSize: 4, workers: 2 });
      const before = tf.memory().numTensors;
      const last = await model.trainLocal(exams, { epochs: 10, learningRate: 3e-3, batchSize: 4, workers: 2, proximalMu: 0.01 });
      expect(last.steps).toBe(10);
      expect(last.loss).toBeLessThan(first.loss / 2);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      model.dispose();
    }
  });
});

describe('Covnet.trainLocal with workers and the native Adam step', () => {
  // Without the native kernels there is no in-place step to compare, and the test is skipped.
  it.skipIf(loadNativeKernels().kernels === null)('matches the tensor path bit for bit', async () => {
    await initBackend({ prefer: 'wasm' });
    expect(tf.getKernel(ADAM_MEAN_STEP, 'wasm')).toBeDefined();
    const trained = async (hyper: Partial<TrainHyperParameters>) => {
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 6, workers: 2 });
      try {
        await model.trainLocal(exams, { epochs: 3, learningRate: 3e-3, batchSize: 4, ...hyper });
        return model.getNamedWeights();
      } finally {
        model.dispose();
      }
    };
    const inPlace = await trained({});
    // A clipping bound no gradient reaches scales by exactly 1, but needs the mean as a tensor.
    const viaTensors = await trained({ clipGradientNorm: 1e30 });
    const initial = createCovnet({ backbone: 'small', inputSize: 32, seed: 6 });
    const start = initial.getNamedWeights();
    initial.dispose();
    expect(maxAbsDifference(inPlace[0].data, start[0].data)).toBeGreaterThan(1e-4);
    inPlace.forEach((tensor, k) => expect(maxAbsDifference(tensor.data, viaTensors[k].data), tensor.name).toBe(0));
  });
});

describe('Covnet.predict with workers', () => {
  it('matches predict in this thread', async () => {
    await initBackend({ prefer: 'wasm' });
    const single = createCovnet({ backbone: 'small', inputSize: 32, seed: 4 });
    const parallel = createCovnet({ backbone: 'small', inputSize: 32, seed: 4, workers: 2 });
    try {
      // Train one model a little, so BN moving statistics and weights differ from the seed's.
      await single.trainLocal(exams, { epochs: 1, learningRate: 1e-3, batchSize: 2 });
      parallel.setNamedWeights(single.getNamedWeights());
      for (const exam of [syntheticExam(0, 5, 32, 90), syntheticExam(2, 1, 32, 91)]) {
        const expected = await single.predict(exam.input);
        const actual = await parallel.predict(exam.input);
        actual.forEach((p, k) => expect(p, `class ${k}`).toBeCloseTo(expected[k], 5));
      }
    } finally {
      single.dispose();
      parallel.dispose();
    }
  });
});
