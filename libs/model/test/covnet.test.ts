import { execFileSync } from 'child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLASSES, createCovnet, initBackend, oneVsRestAuc, type Covnet, type NamedWeight } from '../src';
import { buildCovnetModel } from '../src/covnet/covnet';
import { maxAbsDifference, randomExam, syntheticExam } from './helpers';

function sizeOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function checksum(weights: NamedWeight[]): number {
  let sum = 0;
  for (const w of weights) {
    w.data.forEach((v, i) => {
      sum += v * ((i % 7) + 1);
    });
  }
  return sum;
}

beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
});

describe('createCovnet', () => {
  describe('when the backbone is resnet50', () => {
    let model: Covnet;
    beforeAll(() => {
      model = createCovnet({ backbone: 'resnet50', inputSize: 64, seed: 1 });
    });
    afterAll(() => model.dispose());

    it('matches the torchvision parameter count', () => {
      // torchvision resnet50 has 25,557,032 parameters with its 2048x1000 fc layer
      // (2,049,000); the backbone is 23,508,032, plus a 2048x3 head with bias (6,147).
      expect(model.countTrainableParameters()).toBe(23_508_032 + 6_147);
      expect(model.countTrainableParameters()).toBe(23_514_179);
    });

    it('carries BN moving statistics', () => {
      // BN channels by hand: stem 64; stages (w = 64, 128, 256, 512; 3, 4, 6, 3 blocks):
      // blocks x 6w + 4w for the shortcut = 1408 + 3584 + 10240 + 11264; total 26,560.
      const weights = model.getNamedWeights();
      const moving = weights.filter((w) => /\/moving_(mean|variance)$/.test(w.name));
      expect(moving.reduce((n, w) => n + w.data.length, 0)).toBe(2 * 26_560);
      expect(weights.reduce((n, w) => n + w.data.length, 0)).toBe(23_514_179 + 2 * 26_560);
    });

    it('trains one step on wasm', async () => {
      const before = model.getNamedWeights().find((w) => w.name === 'stem_conv/kernel')!;
      const result = await model.trainLocal([syntheticExam(1, 1, 64, 3)], { epochs: 1, learningRate: 1e-3 });
      const after = model.getNamedWeights().find((w) => w.name === 'stem_conv/kernel')!;
      expect(result.steps).toBe(1);
      expect(Number.isFinite(result.loss)).toBe(true);
      expect(maxAbsDifference(after.data, before.data)).toBeGreaterThan(0);
    });

    it('names layers by stage and block', () => {
      const names = model.getNamedWeights().map((w) => w.name);
      expect(names).toContain('stem_conv/kernel');
      expect(names).toContain('stage1_block1_shortcut_conv/kernel');
      expect(names).toContain('stage4_block3_bn3/moving_variance');
      expect(names).toContain('head_dense/bias');
      expect(new Set(names).size).toBe(names.length);
    });
  });

  describe('when the resnet50 input is 224 pixels', () => {
    it('has torchvision\'s feature map sizes', () => {
      const model = buildCovnetModel({ backbone: 'resnet50', inputSize: 224, seed: 1 });
      const size = (name: string) => (model.getLayer(name).outputShape as number[]).slice(1);
      // torchvision's ResNet-50 at 224: 112 after the stem convolution, 56 after its pool,
      // then 56, 28, 14 and 7 in the four stages, the stride on each stage's first 3x3.
      expect(size('stem_conv')).toEqual([112, 112, 64]);
      expect(size('stem_pool')).toEqual([56, 56, 64]);
      expect(size('stage1_block1_conv2')).toEqual([56, 56, 64]);
      expect(size('stage2_block1_conv2')).toEqual([28, 28, 128]);
      expect(size('stage3_block6_conv2')).toEqual([14, 14, 256]);
      expect(size('stage4_block3_conv3')).toEqual([7, 7, 2048]);
      // Only the strided layers keep a padding layer: stem convolution, stem pool, and the
      // first 3x3 convolution of stages 2 to 4.
      expect(model.layers.filter((layer) => layer.getClassName() === 'ZeroPadding2D').map((layer) => layer.name)).toEqual([
        'stem_conv_pad',
        'stem_pool_pad',
        'stage2_block1_conv2_pad',
        'stage3_block1_conv2_pad',
        'stage4_block1_conv2_pad',
      ]);
      model.dispose();
    });

    it('pads a stride-1 3x3 convolution as a symmetric zero padding does', async () => {
      await initBackend({ prefer: 'wasm' });
      const x = tf.randomNormal([2, 9, 9, 5], 0, 1, 'float32', 1);
      const w = tf.randomNormal([3, 3, 5, 4], 0, 1, 'float32', 2);
      const same = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same');
      const padded = tf.conv2d(tf.pad(x as tf.Tensor4D, [[0, 0], [1, 1], [1, 1], [0, 0]]), w as tf.Tensor4D, 1, 'valid');
      expect(same.shape).toEqual([2, 9, 9, 4]);
      expect(maxAbsDifference(await same.data(), await padded.data())).toBeLessThan(1e-5);
      tf.dispose([x, w, same, padded]);
    });
  });

  describe('when the backbone is resnet18', () => {
    it('matches torchvision and trains', async () => {
      // torchvision resnet18: 11,689,512 with a 512x1000 fc (513,000); head 512x3 + 3.
      const model = createCovnet({ backbone: 'resnet18', inputSize: 64, seed: 1 });
      try {
        expect(model.countTrainableParameters()).toBe(11_689_512 - 513_000 + 1_539);
        const result = await model.trainLocal([syntheticExam(0, 2, 64, 4)], { epochs: 1, learningRate: 1e-3 });
        expect(Number.isFinite(result.loss)).toBe(true);
      } finally {
        model.dispose();
      }
    });
  });

  describe('when the backbone is small', () => {
    it('has the parameters counted by hand', () => {
      // 3x3 convs 3->16->32->64->96 without bias, BN gamma and beta, dense 96x3 + 3.
      const convs = 27 * 16 + 9 * 16 * 32 + 9 * 32 * 64 + 9 * 64 * 96;
      const batchNorms = 2 * (16 + 32 + 64 + 96);
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 1 });
      try {
        expect(model.countTrainableParameters()).toBe(convs + batchNorms + 96 * 3 + 3);
      } finally {
        model.dispose();
      }
    });
  });

  describe('when the options are invalid', () => {
    it('rejects an unknown backbone', () => {
      expect(() => createCovnet({ backbone: 'vgg16' as 'small', inputSize: 64 })).toThrow(/Unknown backbone 'vgg16'/);
    });

    it('rejects an input size of 16', () => {
      expect(() => createCovnet({ backbone: 'small', inputSize: 16 })).toThrow(/at least 32 pixels, got 16/);
    });
  });

  describe('when built twice with one seed', () => {
    it('gives identical names and values', () => {
      const a = createCovnet({ backbone: 'small', inputSize: 32, seed: 5 });
      const b = createCovnet({ backbone: 'small', inputSize: 32, seed: 5 });
      const c = createCovnet({ backbone: 'small', inputSize: 32, seed: 6 });
      try {
        const wa = a.getNamedWeights();
        const wb = b.getNamedWeights();
        expect(wb.map((w) => w.name)).toEqual(wa.map((w) => w.name));
        wa.forEach((w, i) => expect(maxAbsDifference(w.data, wb[i].data), w.name).toBe(0));
        expect(checksum(c.getNamedWeights())).not.toBe(checksum(wa));
      } finally {
        [a, b, c].forEach((m) => m.dispose());
      }
    });
  });

  describe('when built in another process', () => {
    it('gives identical names and values', () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'covnet-'));
      const script = path.join(dir, 'weights.ts');
      const source = path.resolve(__dirname, '../src');
      writeFileSync(
        script,
        [
          `import { initBackend, createCovnet } from ${JSON.stringify(source)};`,
          `initBackend({ prefer: 'wasm' }).then(() => {`,
          `  const w = createCovnet({ backbone: 'small', inputSize: 32, seed: 9 }).getNamedWeights();`,
          `  let sum = 0;`,
          `  for (const t of w) t.data.forEach((v, i) => { sum += v * ((i % 7) + 1); });`,
          `  process.stdout.write(JSON.stringify({ names: w.map((t) => t.name), sum }));`,
          `});`,
        ].join('\n'),
      );
      try {
        const output = execFileSync(process.execPath, ['--import', 'tsx', script], { cwd: path.resolve(__dirname, '../../..'), encoding: 'utf8' });
        const child = JSON.parse(output.slice(output.indexOf('{"names"'))) as { names: string[]; sum: number };
        const local = createCovnet({ backbone: 'small', inputSize: 32, seed: 9 });
        try {
          const weights = local.getNamedWeights();
          expect(child.names).toEqual(weights.map((w) => w.name));
          expect(child.sum).toBe(checksum(weights));
        } finally {
          local.dispose();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

describe('Covnet.predict', () => {
  let model: Covnet;
  beforeAll(() => {
    model = createCovnet({ backbone: 'small', inputSize: 32, seed: 3 });
  });
  afterAll(() => model.dispose());

  describe('when given an exam', () => {
    it('returns three probabilities summing to 1', async () => {
      const probs = await model.predict(randomExam(3, 32, 1));
      expect(probs).toHaveLength(CLASSES.length);
      probs.forEach((p) => expect(p).toBeGreaterThan(0));
      expect(probs[0] + probs[1] + probs[2]).toBeCloseTo(1, 5);
    });

    it('ignores slice order and duplicated slices', async () => {
      // Max over slices is symmetric and idempotent.
      const exam = randomExam(3, 32, 2);
      const sliceSize = 32 * 32;
      const slice = (k: number): Float32Array => exam.data.subarray(k * sliceSize, (k + 1) * sliceSize);
      const reordered = new Float32Array(4 * sliceSize);
      [2, 0, 1, 2].forEach((k, position) => reordered.set(slice(k), position * sliceSize));
      const expected = await model.predict(exam);
      const actual = await model.predict({ slices: 4, size: 32, data: reordered });
      expect(maxAbsDifference(actual, expected)).toBeLessThan(1e-6);
    });

    it('matches the cpu backend', async () => {
      const exam = randomExam(2, 32, 3);
      const weights = model.getNamedWeights();
      const onWasm = await model.predict(exam);
      await tf.setBackend('cpu');
      const reference = createCovnet({ backbone: 'small', inputSize: 32, seed: 99 });
      try {
        reference.setNamedWeights(weights);
        const onCpu = await reference.predict(exam);
        expect(maxAbsDifference(onWasm, onCpu)).toBeLessThan(1e-5);
      } finally {
        reference.dispose();
        await tf.setBackend('wasm');
      }
    });
  });

  describe('when the exam does not fit the model', () => {
    it('rejects another slice size', async () => {
      await expect(model.predict(randomExam(2, 64, 1))).rejects.toThrow(/size is 64, expected 32/);
    });

    it('rejects a short data array', async () => {
      await expect(model.predict({ slices: 2, size: 32, data: new Float32Array(100) })).rejects.toThrow(/2048 values/);
    });
  });
});

describe('Covnet.setNamedWeights', () => {
  let model: Covnet;
  let original: NamedWeight[];
  beforeAll(() => {
    model = createCovnet({ backbone: 'small', inputSize: 32, seed: 4 });
    original = model.getNamedWeights();
  });
  afterAll(() => model.dispose());

  describe('when the weights come in another order', () => {
    it('matches them by name', () => {
      const donor = createCovnet({ backbone: 'small', inputSize: 32, seed: 8 });
      const donorWeights = donor.getNamedWeights();
      donor.dispose();
      model.setNamedWeights([...donorWeights].reverse());
      const after = model.getNamedWeights();
      after.forEach((w, i) => {
        expect(w.name).toBe(donorWeights[i].name);
        expect(maxAbsDifference(w.data, donorWeights[i].data), w.name).toBe(0);
      });
      model.setNamedWeights(original);
    });
  });

  describe('when the set is invalid', () => {
    it('rejects a missing tensor by name', () => {
      const withoutOne = original.filter((w) => w.name !== 'stage2_bn/moving_mean');
      expect(() => model.setNamedWeights(withoutOne)).toThrow(/Missing 1 weight\(s\): 'stage2_bn\/moving_mean' \[32\]/);
    });

    it('rejects an unexpected tensor', () => {
      const extra = [...original, { name: 'stage9_conv/kernel', shape: [1], data: new Float32Array(1) }];
      expect(() => model.setNamedWeights(extra)).toThrow(/Unexpected weight 'stage9_conv\/kernel'/);
    });

    it('rejects a wrong shape with both shapes', () => {
      const reshaped = original.map((w) => (w.name === 'head_dense/kernel' ? { ...w, shape: [3, 96] } : w));
      expect(() => model.setNamedWeights(reshaped)).toThrow("Weight 'head_dense/kernel' has shape [3, 96], expected [96, 3].");
    });

    it('rejects NaN and leaves the model unchanged', () => {
      const poisoned = original.map((w) => ({ ...w, data: new Float32Array(w.data) }));
      const last = poisoned[poisoned.length - 1];
      last.data[0] = Number.NaN;
      poisoned[0].data.fill(7);
      expect(() => model.setNamedWeights(poisoned)).toThrow(new RegExp(`'${last.name}' contains a non-finite value \\(NaN\\) at index 0`));
      expect(maxAbsDifference(model.getNamedWeights()[0].data, original[0].data)).toBe(0);
    });
  });
});

describe('Covnet.trainLocal', () => {
  const exams = [0, 1, 2, 0, 1, 2].map((label, i) => syntheticExam(label as 0 | 1 | 2, 2 + (i % 3), 32, 20 + i));

  describe('when trained for 50 steps', () => {
    it('keeps the tensor count flat', async () => {
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 1 });
      try {
        await model.trainLocal(exams.slice(0, 1), { epochs: 1, learningRate: 1e-3 });
        const before = tf.memory().numTensors;
        const result = await model.trainLocal(exams.slice(0, 5), { epochs: 10, learningRate: 1e-3, proximalMu: 0.01, horizontalFlip: true, classBalanced: true });
        expect(result.steps).toBe(50);
        expect(tf.memory().numTensors).toBe(before);
      } finally {
        model.dispose();
      }
    });
  });

  describe('when classes differ in texture', () => {
    it('lowers the loss and ranks the training exams', async () => {
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 2 });
      try {
        const first = await model.trainLocal(exams, { epochs: 1, learningRate: 3e-3, batchSize: 2, seed: 1 });
        const last = await model.trainLocal(exams, { epochs: 20, learningRate: 3e-3, batchSize: 2, seed: 2 });
        expect(first.steps).toBe(3);
        expect(last.steps).toBe(60);
        expect(last.loss).toBeLessThan(first.loss / 10);
        // Inference mode uses the BN moving statistics, so this also checks that they
        // were updated during training.
        const { probs, labels } = await model.evaluate(exams);
        const auc = oneVsRestAuc(probs, labels);
        expect(auc.covid19).toBe(1);
        expect(auc.cap).toBe(1);
        expect(auc.non_pneumonia).toBe(1);
      } finally {
        model.dispose();
      }
    });
  });

  describe('when BN runs in training mode', () => {
    it('updates the moving statistics', async () => {
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 3 });
      try {
        const before = model.getNamedWeights().find((w) => w.name === 'stage1_bn/moving_mean')!;
        // tfjs-layers initialises moving means to 0, so a fresh model starts there.
        expect(Array.from(before.data).every((v) => v === 0)).toBe(true);
        await model.trainLocal(exams.slice(0, 2), { epochs: 1, learningRate: 1e-3 });
        const after = model.getNamedWeights().find((w) => w.name === 'stage1_bn/moving_mean')!;
        expect(maxAbsDifference(after.data, before.data)).toBeGreaterThan(0);
      } finally {
        model.dispose();
      }
    });
  });

  describe('when run twice from the same weights and seed', () => {
    it('gives identical weights', async () => {
      const runs: NamedWeight[][] = [];
      for (let run = 0; run < 2; run++) {
        const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 4 });
        await model.trainLocal(exams, { epochs: 1, learningRate: 1e-3, batchSize: 3, seed: 7, horizontalFlip: true });
        runs.push(model.getNamedWeights());
        model.dispose();
      }
      runs[0].forEach((w, i) => expect(maxAbsDifference(w.data, runs[1][i].data), w.name).toBe(0));
    });
  });

  describe('when the FedProx term is set', () => {
    it('keeps the weights closer to the global model', async () => {
      const distances: number[] = [];
      for (const proximalMu of [0, 1000]) {
        const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 5 });
        const global = model.getNamedWeights();
        await model.trainLocal(exams, { epochs: 2, learningRate: 1e-2, seed: 1, proximalMu });
        const local = model.getNamedWeights();
        model.dispose();
        distances.push(local.reduce((sum, w, i) => (w.name.includes('moving') ? sum : sum + maxAbsDifference(w.data, global[i].data)), 0));
      }
      expect(distances[1]).toBeLessThan(distances[0] / 2);
    });
  });

  describe('when the input is invalid', () => {
    let model: Covnet;
    beforeAll(() => {
      model = createCovnet({ backbone: 'small', inputSize: 32, seed: 6 });
    });
    afterAll(() => model.dispose());

    it('rejects an empty exam list', async () => {
      await expect(model.trainLocal([], { epochs: 1, learningRate: 1e-3 })).rejects.toThrow(/at least one exam/);
    });

    it('rejects label 3', async () => {
      const bad = { ...exams[0], label: 3 as 0 };
      await expect(model.trainLocal([bad], { epochs: 1, learningRate: 1e-3 })).rejects.toThrow(/exam 0: label must be 0/);
    });

    it('rejects zero epochs', async () => {
      await expect(model.trainLocal(exams, { epochs: 0, learningRate: 1e-3 })).rejects.toThrow(/epochs must be a positive integer, got 0/);
    });
  });
});

describe('Covnet.evaluate', () => {
  describe('when given labelled exams', () => {
    it('returns predict outputs and the labels', async () => {
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 7 });
      try {
        const exams = [syntheticExam(2, 2, 32, 1), syntheticExam(0, 3, 32, 2)];
        const { probs, labels } = await model.evaluate(exams);
        expect(labels).toEqual([2, 0]);
        expect(probs[1]).toEqual(await model.predict(exams[1].input));
      } finally {
        model.dispose();
      }
    });
  });
});

describe('Covnet.dispose', () => {
  describe('when disposed', () => {
    it('frees every tensor and rejects later calls', async () => {
      const before = tf.memory().numTensors;
      const model = createCovnet({ backbone: 'small', inputSize: 32, seed: 8 });
      expect(tf.memory().numTensors).toBeGreaterThan(before);
      model.dispose();
      expect(tf.memory().numTensors).toBe(before);
      expect(() => model.getNamedWeights()).toThrow(/disposed/);
      await expect(model.predict(randomExam(1, 32, 1))).rejects.toThrow(/disposed/);
    });
  });
});
