import type { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCovnet, initBackend, type NamedWeight } from '../src';
import { buildCovnetModel } from '../src/covnet/covnet';
import { trainModel } from '../src/covnet/training';
import { GradientWorkerPool } from '../src/parallel/gradient-pool';
import { maxAbsDifference, syntheticExam } from './helpers';

const SETUP = { backbone: 'small' as const, inputSize: 32, seed: 3 };
const exams = [0, 1, 2, 1].map((label, i) => syntheticExam(label as 0 | 1 | 2, 2 + (i % 2), 32, 80 + i));

/** Settles with `promise`, or rejects after `ms` so that a hang fails the test instead of timing it out. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no reply within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('GradientWorkerPool failures', () => {
  let weights: Float32Array[];

  beforeAll(async () => {
    await initBackend({ prefer: 'wasm' });
    const model = buildCovnetModel(SETUP);
    weights = model.weights.map((w) => new Float32Array(w.read().dataSync()));
    model.dispose();
  });

  describe('when a request fails in a worker', () => {
    it('takes the next request', async () => {
      const pool = await GradientWorkerPool.start(2, SETUP);
      try {
        const broken = { input: { slices: 2, size: 32, data: new Float32Array(5) }, label: 0 as const };
        await expect(pool.gradients(weights, [[broken], exams.slice(0, 1)], () => null)).rejects.toThrow(/gradient worker failed/);
        const lossSums = await within(
          pool.gradients(weights, [exams.slice(0, 1), exams.slice(1, 2)], (results) => results.map((r) => r.lossSum)),
          60_000,
        );
        expect(lossSums).toHaveLength(2);
        expect(lossSums.every((loss) => Number.isFinite(loss) && loss > 0)).toBe(true);
      } finally {
        await pool.close();
      }
    });
  });

  describe('when a share is empty', () => {
    it('sends only the other shares', async () => {
      const pool = await GradientWorkerPool.start(2, SETUP);
      try {
        const alone = await pool.gradients(weights, [exams.slice(0, 1)], (results) => results.map((r) => r.lossSum));
        const withEmpty = await pool.gradients(weights, [[], exams.slice(0, 1)], (results) => results.map((r) => r.lossSum));
        expect(withEmpty).toHaveLength(1);
        // The same weights and exam on the other worker give the same loss.
        expect(withEmpty[0]).toBe(alone[0]);
      } finally {
        await pool.close();
      }
    });
  });

  describe('when a worker has exited', () => {
    it('rejects later requests instead of hanging', async () => {
      const pool = await GradientWorkerPool.start(2, SETUP);
      try {
        // Simulates a worker that died, for example one that the operating system killed.
        const workers = (pool as unknown as { workers: Worker[] }).workers;
        await workers[1].terminate();
        await expect(within(pool.gradients(weights, [exams.slice(0, 1), exams.slice(1, 2)], () => null), 10_000)).rejects.toThrow(/lost a worker \(gradient worker exited with code 1\)/);
        await expect(within(pool.features(weights, [exams[0].input]), 10_000)).rejects.toThrow(/lost a worker \(gradient worker exited with code 1\)/);
      } finally {
        await pool.close();
      }
    });
  });
});

describe('Covnet.trainLocal after a gradient worker exited', () => {
  it('trains on a new pool', async () => {
    await initBackend({ prefer: 'wasm' });
    const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 2, workers: 2 });
    try {
      await model.trainLocal(exams, { epochs: 1, learningRate: 3e-3, batchSize: 4 });
      const pool = (model as unknown as { pool: GradientWorkerPool }).pool;
      await (pool as unknown as { workers: Worker[] }).workers[0].terminate();
      const result = await within(model.trainLocal(exams, { epochs: 1, learningRate: 3e-3, batchSize: 4 }), 60_000);
      expect(result.steps).toBe(1);
      expect(Number.isFinite(result.loss)).toBe(true);
      expect((model as unknown as { pool: GradientWorkerPool }).pool).not.toBe(pool);
    } finally {
      model.dispose();
    }
  });
});

describe('Covnet.trainLocal with workers and mean gradients read in place', () => {
  const weightsAfter = async (hyper: { proximalMu?: number; epochs: number }) => {
    const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 6, workers: 2 });
    try {
      await model.trainLocal(exams, { learningRate: 3e-3, batchSize: 4, ...hyper });
      return model.getNamedWeights();
    } finally {
      model.dispose();
    }
  };

  beforeAll(async () => {
    await initBackend({ prefer: 'wasm' });
  });

  describe('when FedProx is on for the first step', () => {
    // The proximal gradient mu * (w - w_global) is 0 before the first step, so the step equals FedAvg's.
    it('matches the step without FedProx', async () => {
      const fedAvg = await weightsAfter({ epochs: 1 });
      const fedProx = await weightsAfter({ epochs: 1, proximalMu: 0.5 });
      fedAvg.forEach((tensor, k) => expect(maxAbsDifference(tensor.data, fedProx[k].data), tensor.name).toBe(0));
    });
  });

  describe('when FedProx is on for later steps', () => {
    // One worker normalises over the whole batch, as training in this thread does, so both
    // must agree up to float32 rounding, and both must differ from training without FedProx.
    it('matches FedProx in this thread', async () => {
      const pool = await GradientWorkerPool.start(1, SETUP);
      const trained = async (mu: number, withPool: boolean) => {
        const model = buildCovnetModel(SETUP);
        try {
          await trainModel(model, exams, { epochs: 3, learningRate: 3e-3, batchSize: 4, proximalMu: mu, recalibrateBatchNorm: false }, withPool ? pool : undefined);
          return model.trainableWeights.map((w) => w.read().dataSync() as Float32Array);
        } finally {
          model.dispose();
        }
      };
      try {
        const onWorker = await trained(20, true);
        const inThread = await trained(20, false);
        const withoutProx = await trained(0, true);
        const largest = (a: Float32Array[], b: Float32Array[]) => Math.max(...a.map((values, k) => maxAbsDifference(values, b[k])));
        expect(largest(onWorker, withoutProx)).toBeGreaterThan(1e-4);
        expect(largest(onWorker, inThread)).toBeLessThan(1e-5);
      } finally {
        await pool.close();
      }
    });
  });

  describe('when run for several trainings', () => {
    it('leaves the tensor count flat', async () => {
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 2, workers: 2 });
      try {
        await model.trainLocal(exams, { epochs: 1, learningRate: 3e-3, batchSize: 4 });
        const before = tf.memory().numTensors;
        for (let run = 0; run < 3; run++) {
          await model.trainLocal(exams, { epochs: 2, learningRate: 3e-3, batchSize: 4 });
          expect(tf.memory().numTensors, `after training ${run}`).toBe(before);
        }
      } finally {
        model.dispose();
      }
    });
  });

  describe('when validation picks an earlier epoch', () => {
    it('restores the weights of that epoch', async () => {
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 5, workers: 2 });
      const validationExams = [syntheticExam(0, 2, 32, 70), syntheticExam(1, 2, 32, 71), syntheticExam(2, 3, 32, 72)];
      // One step per epoch, so the weights after step k are those of epoch k.
      const afterStep: NamedWeight[][] = [];
      try {
        const result = await model.trainLocal(exams, {
          epochs: 6,
          // A rate this high makes the validation loss rise again within a few epochs.
          learningRate: 0.05,
          batchSize: 4,
          patience: 6,
          validationExams,
          recalibrateBatchNorm: false,
          onStep: () => afterStep.push(model.getNamedWeights()),
        });
        expect(result.bestEpoch, `validation losses ${result.validationLosses.join(', ')}`).toBeLessThan(result.epochsRun);
        const best = afterStep[result.bestEpoch - 1];
        model.getNamedWeights().forEach((tensor, k) => expect(maxAbsDifference(tensor.data, best[k].data), tensor.name).toBe(0));
      } finally {
        model.dispose();
      }
    });
  });
});
