import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCovnet, initBackend, type LabelledExam } from '../src';
import { drawTransform, sliceWindow, transformExam, type ExamTransform } from '../src/covnet/augmentation';
import { clipByGlobalNorm } from '../src/covnet/gradient-clipping';
import { seededRandom } from '../src/covnet/random';
import { epochOrder, explainingMemory } from '../src/covnet/training';
import { maxAbsDifference, syntheticExam } from './helpers';

beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
});

const IDENTITY: ExamTransform = { flip: false, rotationDegrees: 0, shiftX: 0, shiftY: 0, huShift: 0 };

/** Builds a 3x3 slice with values 0.1 .. 0.9 row by row. */
function ramp(): LabelledExam['input'] {
  return { slices: 1, size: 3, data: Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]) };
}

function expectValues(actual: Float32Array, expected: number[]): void {
  expect(actual).toHaveLength(expected.length);
  expected.forEach((v, i) => expect(actual[i], `pixel ${i}`).toBeCloseTo(v, 6));
}

describe('transformExam', () => {
  describe('when rotating by 90 degrees', () => {
    it('turns the slice counter-clockwise', () => {
      // By hand: the top row (0.1 0.2 0.3) becomes the left column read upwards.
      const rotated = transformExam(ramp(), { ...IDENTITY, rotationDegrees: 90 });
      expectValues(rotated.data, [0.3, 0.6, 0.9, 0.2, 0.5, 0.8, 0.1, 0.4, 0.7]);
    });
  });

  describe('when shifting by one pixel to the right', () => {
    it('moves columns and fills air', () => {
      const shifted = transformExam(ramp(), { ...IDENTITY, shiftX: 1 });
      expectValues(shifted.data, [0, 0.1, 0.2, 0, 0.4, 0.5, 0, 0.7, 0.8]);
    });
  });

  describe('when shifting by half a pixel down', () => {
    it('interpolates between rows', () => {
      const shifted = transformExam(ramp(), { ...IDENTITY, shiftY: 0.5 });
      // Row 0 is halfway between air (0) and row 0; row 1 halfway between rows 0 and 1.
      expectValues(shifted.data, [0.05, 0.1, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75]);
    });
  });

  describe('when flipping', () => {
    it('mirrors each row', () => {
      expectValues(transformExam(ramp(), { ...IDENTITY, flip: true }).data, [0.3, 0.2, 0.1, 0.6, 0.5, 0.4, 0.9, 0.8, 0.7]);
    });
  });

  describe('when the density shifts by 150 HU', () => {
    it('adds 0.1 grey and clips at 1', () => {
      // The lung window is 1500 HU wide, so 150 HU is 0.1 of the grey range.
      const brighter = transformExam(ramp(), { ...IDENTITY, huShift: 150 });
      expectValues(brighter.data, [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]);
    });
  });

  describe('when no transform is drawn', () => {
    it('returns the exam itself', () => {
      const exam = ramp();
      expect(transformExam(exam, drawTransform({}, seededRandom(1)))).toBe(exam);
    });
  });
});

describe('drawTransform', () => {
  it('stays within the ranges', () => {
    const random = seededRandom(3);
    for (let i = 0; i < 200; i++) {
      const t = drawTransform({ rotationDegrees: 10, shiftPixels: 4, huJitter: 50 }, random);
      expect(Math.abs(t.rotationDegrees)).toBeLessThanOrEqual(10);
      expect(Math.abs(t.shiftX)).toBeLessThanOrEqual(4);
      expect(Math.abs(t.shiftY)).toBeLessThanOrEqual(4);
      expect(Math.abs(t.huShift)).toBeLessThanOrEqual(50);
      expect(t.flip).toBe(false);
    }
  });
});

describe('sliceWindow', () => {
  it('keeps contiguous slices', () => {
    const exam = { slices: 6, size: 2, data: Float32Array.from({ length: 24 }, (_, i) => Math.floor(i / 4)) };
    const window = sliceWindow(exam, 3, seededRandom(5));
    expect(window.slices).toBe(3);
    const first = window.data[0];
    expect(Array.from(window.data)).toEqual([first, first, first, first, first + 1, first + 1, first + 1, first + 1, first + 2, first + 2, first + 2, first + 2]);
    expect(sliceWindow(exam, 8, seededRandom(5))).toBe(exam);
  });
});

describe('epochOrder', () => {
  describe('when classes are balanced by sampling', () => {
    it('draws each present class equally often', () => {
      // Nine covid19 exams and one non_pneumonia exam: each present class has probability 1/2.
      const labels = [0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
      const random = seededRandom(11);
      let rare = 0;
      for (let epoch = 0; epoch < 200; epoch++) {
        rare += epochOrder(labels, true, random).filter((i) => labels[i] === 2).length;
      }
      // 2000 draws with p = 1/2: mean 1000, standard deviation 22.4.
      expect(rare).toBeGreaterThan(900);
      expect(rare).toBeLessThan(1100);
    });
  });
});

describe('explainingMemory', () => {
  const exams = [syntheticExam(0, 3, 32, 1), syntheticExam(1, 5, 32, 2)];

  it('names the step size when wasm memory runs out', () => {
    // The error that wasm raises when a kernel writes past its memory.
    const { RuntimeError } = (globalThis as unknown as { WebAssembly: { RuntimeError: ErrorConstructor } }).WebAssembly;
    const outOfMemory = () => {
      throw new RuntimeError('memory access out of bounds');
    };
    // 3 + 5 slices of 32x32 pixels, counted by hand.
    expect(() => explainingMemory(exams, outOfMemory)).toThrow(
      'A training step of 2 exams with 8 slices of 32x32 pixels ran out of the backend\'s memory (memory access out of bounds). Lower batchSize or maxSlicesPerExam',
    );
  });

  it('passes other errors and results through', () => {
    const other = new Error('labels must be 0, 1 or 2');
    expect(() =>
      explainingMemory(exams, () => {
        throw other;
      }),
    ).toThrow(other);
    expect(explainingMemory(exams, () => 42)).toBe(42);
  });
});

describe('clipByGlobalNorm', () => {
  it('scales to the maximum norm', () => {
    // By hand: the global norm of [3, 4] and [12] is sqrt(9 + 16 + 144) = 13.
    const clipped = tf.tidy(() => clipByGlobalNorm([tf.tensor1d([3, 4]), tf.tensor1d([12])], 6.5).map((t) => Array.from(t.dataSync())));
    expect(clipped[0][0]).toBeCloseTo(1.5, 6);
    expect(clipped[0][1]).toBeCloseTo(2, 6);
    expect(clipped[1][0]).toBeCloseTo(6, 6);
  });

  it('keeps gradients below the maximum', () => {
    const kept = tf.tidy(() => Array.from(clipByGlobalNorm([tf.tensor1d([3, 4])], 10)[0].dataSync()));
    expect(kept[0]).toBeCloseTo(3, 6);
    expect(kept[1]).toBeCloseTo(4, 6);
  });
});

describe('Covnet.trainLocal options', () => {
  const exams = [0, 1, 2, 0, 1, 2].map((label, i) => syntheticExam(label as 0 | 1 | 2, 2 + (i % 3), 32, 40 + i));

  function kernelOf(model: ReturnType<typeof createCovnet>): Float32Array {
    return model.getNamedWeights().find((w) => w.name === 'stage2_conv/kernel')!.data;
  }

  describe('when weight decay dominates the gradient', () => {
    it('moves each weight towards zero by the learning rate', async () => {
      // Adam's first step is lr * g / (|g| + epsilon) per weight. With a weight decay of
      // 1e6 the gradient is w * 1e6 in practice, so every weight moves by lr towards zero.
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 8 });
      try {
        const before = kernelOf(model);
        await model.trainLocal(exams.slice(0, 2), { epochs: 1, learningRate: 1e-3, batchSize: 2, weightDecay: 1e6 });
        const after = kernelOf(model);
        let checked = 0;
        before.forEach((w, i) => {
          if (Math.abs(w) > 0.01) {
            expect(after[i] - w).toBeCloseTo(-Math.sign(w) * 1e-3, 6);
            checked++;
          }
        });
        expect(checked).toBeGreaterThan(1000);
      } finally {
        model.dispose();
      }
    });
  });

  describe('when gradients are clipped to a tiny norm', () => {
    it('barely moves the weights', async () => {
      // Clipped to a global norm of 1e-9, each gradient is far below Adam's epsilon (1e-7
      // in tfjs), so a step moves weights by much less than the learning rate.
      const moved: number[] = [];
      for (const clipGradientNorm of [undefined, 1e-9]) {
        const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 9 });
        const before = kernelOf(model);
        await model.trainLocal(exams.slice(0, 2), { epochs: 1, learningRate: 1e-3, batchSize: 2, clipGradientNorm });
        const after = kernelOf(model);
        moved.push(Math.max(...after.map((v, i) => Math.abs(v - before[i]))));
        model.dispose();
      }
      expect(moved[0]).toBeCloseTo(1e-3, 4);
      expect(moved[1]).toBeLessThan(1e-4);
    });
  });

  describe('when validation loss rises', () => {
    it('stops early and keeps the best epoch', async () => {
      // The validation exams carry the training images with covid19 and cap swapped, so
      // learning the training labels raises the validation loss.
      const swapLabel: Record<number, 0 | 1 | 2> = { 0: 1, 1: 0, 2: 2 };
      const swapped = exams.map((e) => ({ input: e.input, label: swapLabel[e.label] }));
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 2 });
      try {
        const result = await model.trainLocal(exams, { epochs: 15, learningRate: 3e-3, batchSize: 2, seed: 2, validationExams: swapped, patience: 2, recalibrateBatchNorm: false });
        expect(result.stoppedEarly).toBe(true);
        expect(result.epochsRun).toBeLessThan(15);
        expect(result.validationLosses).toHaveLength(result.epochsRun);
        expect(result.epochsRun - result.bestEpoch).toBe(2);
        const bestLoss = Math.min(...result.validationLosses);
        expect(result.validationLosses[result.bestEpoch - 1]).toBe(bestLoss);

        // Recomputed from evaluate's probabilities: mean of -ln p(label).
        const { probs, labels } = await model.evaluate(swapped);
        const recomputed = probs.reduce((sum, row, i) => sum - Math.log(row[labels[i]]), 0) / probs.length;
        expect(recomputed).toBeCloseTo(bestLoss, 4);
      } finally {
        model.dispose();
      }
    });
  });

  describe('when BN statistics are recalibrated', () => {
    it('sets them to the training set statistics', async () => {
      const same = [0, 1, 2, 0].map((label, i) => syntheticExam(label as 0 | 1 | 2, 3, 32, 70 + i));
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 12 });
      try {
        // One batch holds every exam, so the recalibrated statistics are those of all 12 slices.
        await model.trainLocal(same, { epochs: 3, learningRate: 3e-3, batchSize: 4 });
        const weights = model.getNamedWeights();
        const named = (name: string) => weights.find((w) => w.name === name)!;
        const kernel = named('stage1_conv/kernel');

        // Reference on cpu: stage1_conv (3x3, stride 2, padding 1) of the grey slices repeated
        // into three channels, then the per-channel mean and variance over all slices.
        await tf.setBackend('cpu');
        const [mean, variance] = tf.tidy(() => {
          const grey = tf.concat(same.map((e) => tf.tensor4d(e.input.data, [3, 32, 32, 1])));
          const rgb = tf.pad(tf.concat([grey, grey, grey], 3), [[0, 0], [1, 1], [1, 1], [0, 0]]);
          const conv = tf.conv2d(rgb as tf.Tensor4D, tf.tensor4d(kernel.data, kernel.shape as [number, number, number, number]), 2, 'valid');
          const moments = tf.moments(conv, [0, 1, 2]);
          return [moments.mean.dataSync(), moments.variance.dataSync()];
        });
        await tf.setBackend('wasm');
        expect(maxAbsDifference(named('stage1_bn/moving_mean').data, mean)).toBeLessThan(1e-4);
        expect(maxAbsDifference(named('stage1_bn/moving_variance').data, variance)).toBeLessThan(1e-4 * Math.max(1, ...variance));
      } finally {
        model.dispose();
      }
    });
  });

  describe('when every option is on for 50 steps', () => {
    it('keeps the tensor count flat', async () => {
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 1 });
      try {
        await model.trainLocal(exams.slice(0, 1), { epochs: 1, learningRate: 1e-3 });
        const before = tf.memory().numTensors;
        const result = await model.trainLocal(exams.slice(0, 5), {
          epochs: 10,
          learningRate: 1e-3,
          proximalMu: 0.01,
          weightDecay: 1e-4,
          clipGradientNorm: 1,
          classBalanced: true,
          horizontalFlip: true,
          rotationDegrees: 10,
          shiftPixels: 2,
          huJitter: 30,
          maxSlicesPerExam: 3,
          validationExams: exams.slice(5),
          patience: 100,
        });
        expect(result.steps).toBe(50);
        expect(tf.memory().numTensors).toBe(before);
      } finally {
        model.dispose();
      }
    });
  });

  describe('when an option is invalid', () => {
    it('rejects negative weight decay', async () => {
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 1 });
      await expect(model.trainLocal(exams, { epochs: 1, learningRate: 1e-3, weightDecay: -1 })).rejects.toThrow(/weightDecay/);
      await expect(model.trainLocal(exams, { epochs: 1, learningRate: 1e-3, clipGradientNorm: 0 })).rejects.toThrow(/clipGradientNorm/);
      await expect(model.trainLocal(exams, { epochs: 1, learningRate: 1e-3, patience: 0 })).rejects.toThrow(/patience/);
      model.dispose();
    });
  });
});

describe('Covnet.evaluate', () => {
  describe('when run twice', () => {
    it('gives the same scores and weights', async () => {
      const exams = [0, 1, 2].map((label, i) => syntheticExam(label as 0 | 1 | 2, 3, 32, 60 + i));
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 6 });
      try {
        // Training first, so the BN moving statistics differ from their initial values.
        await model.trainLocal(exams, { epochs: 2, learningRate: 1e-3, batchSize: 3 });
        const weightsBefore = model.getNamedWeights();
        const first = await model.evaluate(exams);
        const second = await model.evaluate(exams);
        expect(second.probs).toEqual(first.probs);
        // Inference mode leaves the moving statistics alone.
        const weightsAfter = model.getNamedWeights();
        weightsAfter.forEach((w, i) => expect(Array.from(w.data), w.name).toEqual(Array.from(weightsBefore[i].data)));
      } finally {
        model.dispose();
      }
    });
  });
});

describe('Covnet.trainLocal progress', () => {
  describe('when onStep is given', () => {
    it('reports every step against the planned count', async () => {
      // 5 exams in batches of 2 take ceil(5 / 2) = 3 steps per epoch: 6 in 2 epochs.
      const exams = [0, 1, 2, 0, 1].map((label, i) => syntheticExam(label as 0 | 1 | 2, 2, 32, 80 + i));
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 4 });
      const calls: [number, number][] = [];
      try {
        const result = await model.trainLocal(exams, { epochs: 2, learningRate: 1e-3, batchSize: 2, onStep: (steps, planned) => calls.push([steps, planned]) });
        expect(calls).toEqual([1, 2, 3, 4, 5, 6].map((step) => [step, 6]));
        expect(result.steps).toBe(6);
      } finally {
        model.dispose();
      }
    });
  });
});
