import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCovnet, initBackend, type Covnet } from '../src';
import { maxAbs, maxAbsDifference, randomExam } from './helpers';

/**
 * Computes Grad-CAM for COVNet's head in closed form. The logit of class k is
 * sum_c W[c, k] * max_s mean_hw A[s, :, :, c] + b[k]. Its gradient with respect to
 * A[s, i, j, c] is W[c, k] / (h * w) on the slice that wins the max for channel c, else 0.
 */
function closedFormCam(features: Float32Array, shape: number[], denseKernel: Float32Array, classIndex: number): Float32Array {
  const [slices, height, width, channels] = shape;
  const area = height * width;
  const at = (s: number, i: number, c: number): number => features[(s * area + i) * channels + c];

  const winner = new Array<number>(channels).fill(0);
  for (let c = 0; c < channels; c++) {
    let best = -Infinity;
    for (let s = 0; s < slices; s++) {
      let mean = 0;
      for (let i = 0; i < area; i++) {
        mean += at(s, i, c) / area;
      }
      if (mean > best) {
        best = mean;
        winner[c] = s;
      }
    }
  }

  const cam = new Float32Array(slices * area);
  for (let s = 0; s < slices; s++) {
    for (let i = 0; i < area; i++) {
      let sum = 0;
      for (let c = 0; c < channels; c++) {
        if (winner[c] === s) {
          sum += (denseKernel[c * 3 + classIndex] / area) * at(s, i, c);
        }
      }
      cam[s * area + i] = Math.max(0, sum);
    }
  }
  return cam;
}

describe('Covnet.explain', () => {
  let model: Covnet;
  beforeAll(async () => {
    await initBackend({ prefer: 'wasm' });
    model = createCovnet({ backbone: 'small', inputSize: 32, seed: 11 });
  });
  afterAll(() => model.dispose());

  describe('when asked for each class', () => {
    it('matches the closed-form gradient', async () => {
      const exam = randomExam(3, 32, 5);
      const { shape, data } = await model.featureMaps(exam);
      expect(shape).toEqual([3, 2, 2, 96]);
      const kernel = model.getNamedWeights().find((w) => w.name === 'head_dense/kernel')!;
      let nonZeroMaps = 0;
      for (const classIndex of [0, 1, 2]) {
        const result = await model.explain(exam, classIndex);
        const expected = closedFormCam(data, shape, kernel.data, classIndex);
        expect(result.classIndex).toBe(classIndex);
        expect(result.featureSize).toBe(2);
        expect(maxAbsDifference(result.rawCam, expected)).toBeLessThan(1e-5 * Math.max(1, maxAbs(expected)));
        if (maxAbs(expected) > 0) {
          nonZeroMaps += 1;
        }
      }
      expect(nonZeroMaps).toBeGreaterThan(0);
    });
  });

  describe('when no class is given', () => {
    it('explains the predicted class', async () => {
      const exam = randomExam(2, 32, 6);
      const probs = await model.predict(exam);
      const result = await model.explain(exam);
      expect(result.classIndex).toBe(probs.indexOf(Math.max(...probs)));
      expect(maxAbsDifference(result.probs, probs)).toBeLessThan(1e-6);
    });
  });

  describe('when the map is upsampled', () => {
    it('covers every pixel within [0, 1]', async () => {
      const exam = randomExam(2, 32, 7);
      const result = await model.explain(exam);
      expect(result.heatmap).toHaveLength(2 * 32 * 32);
      expect(Math.min(...result.heatmap)).toBeGreaterThanOrEqual(0);
      const peak = Math.max(...result.heatmap);
      // Scaled by the exam's maximum, unless the whole map is zero.
      expect(peak === 1 || maxAbs(result.rawCam) === 0).toBe(true);
    });
  });

  describe('when the class index is invalid', () => {
    it('rejects class 3', async () => {
      await expect(model.explain(randomExam(1, 32, 8), 3)).rejects.toThrow(/classIndex must be 0, 1 or 2, got 3/);
    });
  });

  describe('when the model is disposed afterwards', () => {
    it('frees the feature sub-model too', async () => {
      const before = tf.memory().numTensors;
      const local = createCovnet({ backbone: 'small', inputSize: 32, seed: 12 });
      await local.explain(randomExam(1, 32, 9));
      local.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  });
});
