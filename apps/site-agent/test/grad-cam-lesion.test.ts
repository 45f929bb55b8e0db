import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeUid, SeededRandom, synthesizeExam, writeExamAsDicom, type ModelInput, type SyntheticExam } from '@covnet/imaging';
import { createCovnet, initBackend, type Covnet, type NamedWeight } from '@covnet/model';
import { loadExamInput } from '../src/archive/exam-input';
import { mostSuspiciousSlices } from '../src/commands/heatmap-overlay';

const INPUT_SIZE = 128;
// Share of a slice's pixels that counts as the hottest region of its heatmap.
const HOTTEST_FRACTION = 0.05;

/**
 * Sets the weights of a `small` COVNet by hand so that stage 4's channel 0 measures
 * ground-glass density, and the covid19 logit is 10 times its slice-pooled value. The
 * lung window maps HU h to (h + 1350) / 1500, so normal lung (-850 HU) is 0.33, ground
 * glass (-550 to -350 HU) 0.53 to 0.67, fat (-100 HU) 0.83 and soft tissue (40 HU) 0.93.
 * Stage 1 takes the 3x3 mean m of the slice twice, as a = relu(m - 0.47) and
 * b = relu(m - 0.70). Stage 2 averages a - 4b, which is positive for m between 0.47 and
 * 0.78 only, so soft tissue, fat and bone count against a region and normal lung not at
 * all. Stage 3 subtracts 0.02 to drop thin residues such as partial-volume edges of the
 * lungs, and stage 4 averages. Every other channel and logit is zero.
 *
 * The model is built rather than trained. The `small` backbone trained for under a minute
 * on synthetic exams classified them but spread its evidence over slices without lesions,
 * so a trained model would test the training budget more than Grad-CAM.
 */
function groundGlassDetector(model: Covnet): NamedWeight[] {
  const stages: Record<string, { kernel: (index: KernelIndex) => number; bias: number[] }> = {
    stage1: { kernel: ({ output }) => (output < 2 ? 1 / 27 : 0), bias: [-0.47, -0.7] },
    stage2: { kernel: ({ input, output }) => (output === 0 ? [1 / 9, -4 / 9][input] ?? 0 : 0), bias: [0] },
    stage3: { kernel: ({ input, output }) => (output === 0 && input === 0 ? 1 / 9 : 0), bias: [-0.02] },
    stage4: { kernel: ({ input, output }) => (output === 0 && input === 0 ? 1 / 9 : 0), bias: [0] },
  };
  return model.getNamedWeights().map(({ name, shape, data }) => {
    const values = new Float32Array(data.length);
    const [layer, variable] = name.split('/');
    const stage = stages[layer.replace(/_(conv|bn)$/, '')];
    if (stage !== undefined && variable === 'kernel') {
      const [, , inputs, outputs] = shape;
      for (let i = 0; i < values.length; i++) {
        values[i] = stage.kernel({ input: Math.floor(i / outputs) % inputs, output: i % outputs });
      }
    } else if (stage !== undefined) {
      // Inference-mode BN is gamma * (x - mean) / sqrt(variance + 1e-5) + beta, so these
      // values make it add beta only.
      const fill: Record<string, (channel: number) => number> = {
        gamma: () => 1,
        beta: (channel) => stage.bias[channel] ?? 0,
        moving_mean: () => 0,
        moving_variance: () => 1 - 1e-5,
      };
      values.forEach((_, channel) => (values[channel] = fill[variable](channel)));
    } else if (name === 'head_dense/kernel') {
      // Kernel [channels, classes]: channel 0 feeds the covid19 logit.
      values[0] = 10;
    }
    return { name, shape, data: values };
  });
}

interface KernelIndex {
  input: number;
  output: number;
}

/**
 * Maps the phantom's lesion mask onto the model input by the crop and slice choice that
 * preprocessing reports, taking the nearest source pixel of each input pixel's centre.
 */
function lesionMaskOfInput(exam: SyntheticExam, input: ModelInput): Uint8Array {
  const { crop, sliceIndices, size } = input;
  if (crop === undefined || sliceIndices === undefined) throw new Error('preprocessing reported no crop or slice indices');
  const mask = new Uint8Array(input.slices * size * size);
  for (const [slice, source] of sliceIndices.entries()) {
    for (let row = 0; row < size; row++) {
      const sourceRow = Math.round(crop.row0 + ((row + 0.5) * crop.height) / size - 0.5);
      for (let col = 0; col < size; col++) {
        const sourceCol = Math.round(crop.col0 + ((col + 0.5) * crop.width) / size - 0.5);
        if (sourceRow < 0 || sourceRow >= exam.rows || sourceCol < 0 || sourceCol >= exam.columns) continue;
        mask[(slice * size + row) * size + col] = exam.lesionMask[(source * exam.rows + sourceRow) * exam.columns + sourceCol];
      }
    }
  }
  return mask;
}

/** Share of the slice's hottest HOTTEST_FRACTION pixels that lie on a lesion. */
function hottestRegionOnLesion(heat: Float32Array, lesion: Uint8Array): number {
  const order = Array.from(heat.keys()).sort((a, b) => heat[b] - heat[a]);
  const hottest = order.slice(0, Math.ceil(HOTTEST_FRACTION * heat.length));
  return hottest.filter((index) => lesion[index] === 1).length / hottest.length;
}

/**
 * Decides whether the hottest region of a slice's map marks its lesion. At least half of
 * the region must lie on a lesion, and that share must be at least 4 times the slice's
 * lesion area fraction, the share that a region placed at random would reach.
 */
function marksLesion(heat: Float32Array, lesion: Uint8Array): boolean {
  const lesionFraction = lesion.reduce((sum, value) => sum + value, 0) / lesion.length;
  const onLesion = hottestRegionOnLesion(heat, lesion);
  return onLesion >= 0.5 && onLesion >= 4 * lesionFraction;
}

/** Moves a size x size map by a quarter of its side down and right, wrapping around. */
function shiftByQuarter(heat: Float32Array, size: number): Float32Array {
  const shifted = new Float32Array(heat.length);
  const offset = size / 4;
  for (let row = 0; row < size; row++) {
    for (let col = 0; col < size; col++) {
      shifted[row * size + col] = heat[((row + offset) % size) * size + ((col + offset) % size)];
    }
  }
  return shifted;
}

interface CovidCase {
  seed: number;
  /** Slice with the highest Grad-CAM peak, the first one that infer draws. */
  slice: number;
  heat: Float32Array;
  lesion: Uint8Array;
}

describe('Grad-CAM on synthetic covid19 exams', () => {
  let workDir: string;
  let model: Covnet;
  const cases: CovidCase[] = [];

  beforeAll(async () => {
    await initBackend({ prefer: 'wasm' });
    workDir = await mkdtemp(join(tmpdir(), 'covnet-grad-cam-'));
    model = createCovnet({ backbone: 'small', inputSize: INPUT_SIZE });
    model.setNamedWeights(groundGlassDetector(model));

    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      // The exam goes through the files and the preprocessing that `infer EXAM_DIR` uses.
      const exam = synthesizeExam({ seed, label: 'covid19', size: INPUT_SIZE, slices: 16 });
      const random = new SeededRandom(seed);
      const identity = {
        patientName: 'SYNTH^GRADCAM',
        patientID: `SYNTH${seed}`,
        studyInstanceUID: makeUid(random),
        seriesInstanceUID: makeUid(random),
        frameOfReferenceUID: makeUid(random),
        institutionName: 'Synthetic Hospital',
      };
      const examDir = join(workDir, `exam-${seed}`);
      await mkdir(examDir);
      await writeExamAsDicom(exam, identity, examDir, random);
      const input = await loadExamInput(examDir, { backbone: 'small', inputSize: INPUT_SIZE, maxSlices: 16 });

      const cam = await model.explain(input, 0);
      const [{ slice }] = mostSuspiciousSlices(cam, 1);
      const pixels = INPUT_SIZE * INPUT_SIZE;
      const heat = cam.heatmap.slice(slice * pixels, (slice + 1) * pixels);
      const lesion = lesionMaskOfInput(exam, input).slice(slice * pixels, (slice + 1) * pixels);
      cases.push({ seed, slice, heat, lesion });
    }
  }, 60_000);

  afterAll(async () => {
    model?.dispose();
    await rm(workDir, { recursive: true, force: true });
  });

  it('puts the hottest region on the planted lesion', () => {
    expect(cases).toHaveLength(8);
    for (const { seed, slice, heat, lesion } of cases) {
      expect({ seed, slice, marksLesion: marksLesion(heat, lesion) }).toEqual({ seed, slice, marksLesion: true });
    }
  });

  // The check must be able to fail: the same maps moved off the lesions do not pass it.
  // Mirror images are no control, because covid19 lesions are bilateral and often meet
  // their mirror image.
  it('rejects the maps moved by a quarter of the slice', () => {
    for (const { seed, slice, heat, lesion } of cases) {
      expect({ seed, slice, marksLesion: marksLesion(shiftByQuarter(heat, INPUT_SIZE), lesion) }).toEqual({ seed, slice, marksLesion: false });
    }
  });
});
