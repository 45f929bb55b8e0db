import * as tf from '@tensorflow/tfjs';
import { drawTransform, sliceWindow, transformExam } from './augmentation';
import { CLASSES } from './classes';
import { examTensor, type LabelledExam } from './exam';
import { clipByGlobalNorm } from './gradient-clipping';
import { seededRandom, shuffledIndices } from './random';
import { examLogits, sliceFeatureModel } from './sub-models';
import type { GradientWorkerPool } from '../parallel/gradient-pool';
import { tensorValues } from '../parallel/shared-values';
import { createAdam, type StepOptimizer } from './fused-adam';

export interface TrainHyperParameters {
  /** Maximum number of passes over the exams; early stopping may end training sooner. */
  epochs: number;
  learningRate: number;
  /** Exams whose slices form one batch and one Adam step. Default 1. */
  batchSize?: number;
  /** Seed for exam order and augmentation. Default 0. */
  seed?: number;
  /** FedProx proximal weight mu: adds mu/2 * ||w - w_global||^2 to the loss. Default 0 (FedAvg). */
  proximalMu?: number;
  /**
   * L2 weight decay added to every trainable weight's gradient before the Adam step, as
   * PyTorch's Adam(weight_decay=...) does (not the decoupled AdamW form). Default 0.
   */
  weightDecay?: number;
  /** Rescale each step's gradients to this global L2 norm when they exceed it. Default: no clipping. */
  clipGradientNorm?: number;
  /** Draw each class equally often (exams with replacement, within a class uniformly). Default false. */
  classBalanced?: boolean;
  /** Mirror each exam left-right with probability 1/2. Default false. */
  horizontalFlip?: boolean;
  /** Rotate each exam by up to this many degrees either way. Default 0. */
  rotationDegrees?: number;
  /** Shift each exam by up to this many pixels along each axis. Default 0. */
  shiftPixels?: number;
  /** Offset each exam's density by up to this many HU either way. Default 0. */
  huJitter?: number;
  /**
   * Train on a random run of at most this many contiguous slices of each exam, to bound the
   * memory of a step. Default: all slices.
   */
  maxSlicesPerExam?: number;
  /**
   * The site's validation exams. When given, their mean cross-entropy is computed in
   * inference mode after every epoch, training stops after `patience` epochs without a
   * lower value, and the model ends with the weights of the best epoch.
   */
  validationExams?: LabelledExam[];
  /** Epochs without a lower validation loss before training stops. Default 2. */
  patience?: number;
  /**
   * Called after every optimizer step with the steps taken and the steps planned for all
   * epochs (early stopping may end training before the planned count). For progress display.
   */
  onStep?: (steps: number, plannedSteps: number) => void;
  /**
   * After the last epoch, recompute the BN moving statistics as the average of the batch
   * statistics over one pass of the training exams (no augmentation), with the final
   * weights. Moving averages lag behind weights that change quickly, as in a short local
   * round, and inference then normalises with stale statistics. Default true.
   */
  recalibrateBatchNorm?: boolean;
  /**
   * Gradient worker threads, one wasm backend and model replica each. A batch is split by
   * exam across them, so batchSize should be at least workers; each worker's BN
   * normalises over its own share of slices. Default 1: train in this thread.
   */
  workers?: number;
}

export interface TrainResult {
  /** Mean cross-entropy of the exams seen in the last epoch run, proximal term excluded. */
  loss: number;
  /** Optimizer steps taken. */
  steps: number;
  /** Epochs run, at most `epochs`. */
  epochsRun: number;
  /** Validation loss after each epoch run; empty without validation exams. */
  validationLosses: number[];
  /** 1-based epoch whose weights the model holds; the last epoch without validation exams. */
  bestEpoch: number;
  /** True when validation loss stopped training before `epochs`. */
  stoppedEarly: boolean;
}

/**
 * Checks hyper-parameters before any tensor is made.
 * @throws Error naming the invalid value.
 */
export function validateHyperParameters(hyper: TrainHyperParameters): void {
  if (!Number.isInteger(hyper.epochs) || hyper.epochs < 1) {
    throw new Error(`epochs must be a positive integer, got ${hyper.epochs}.`);
  }
  if (!(hyper.learningRate > 0) || !Number.isFinite(hyper.learningRate)) {
    throw new Error(`learningRate must be a positive number, got ${hyper.learningRate}.`);
  }
  for (const key of ['batchSize', 'maxSlicesPerExam', 'patience', 'workers'] as const) {
    const value = hyper[key];
    if (value !== undefined && (!Number.isInteger(value) || value < 1)) {
      throw new Error(`${key} must be a positive integer, got ${value}.`);
    }
  }
  for (const key of ['proximalMu', 'weightDecay', 'rotationDegrees', 'shiftPixels', 'huJitter'] as const) {
    const value = hyper[key];
    if (value !== undefined && (!(value >= 0) || !Number.isFinite(value))) {
      throw new Error(`${key} must be a finite number >= 0, got ${value}.`);
    }
  }
  if (hyper.clipGradientNorm !== undefined && (!(hyper.clipGradientNorm > 0) || !Number.isFinite(hyper.clipGradientNorm))) {
    throw new Error(`clipGradientNorm must be a positive number, got ${hyper.clipGradientNorm}.`);
  }
}

/** Exam indices for one epoch: a shuffle, or a class-balanced draw with replacement of the same length. */
export function epochOrder(labels: number[], classBalanced: boolean, random: () => number): number[] {
  if (!classBalanced) {
    return shuffledIndices(labels.length, random);
  }
  const byClass = CLASSES.map((_, label) => labels.flatMap((l, i) => (l === label ? [i] : [])));
  const present = byClass.filter((indices) => indices.length > 0);
  return Array.from({ length: labels.length }, () => {
    const indices = present[Math.floor(random() * present.length)];
    return indices[Math.floor(random() * indices.length)];
  });
}

/**
 * Runs local training of `model` on the exams: each step runs a batch of `batchSize` exams
 * (their slices together through the backbone, max-pooled per exam) and one Adam step. Each
 * call makes a fresh Adam optimizer, so moment estimates do not carry over between rounds.
 */
export async function trainModel(
  model: tf.LayersModel,
  exams: LabelledExam[],
  hyper: TrainHyperParameters,
  pool?: GradientWorkerPool,
): Promise<TrainResult> {
  const batchSize = hyper.batchSize ?? 1;
  const mu = hyper.proximalMu ?? 0;
  const patience = hyper.patience ?? 2;
  const validation = hyper.validationExams ?? [];
  const random = seededRandom(hyper.seed ?? 0);
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const optimizer = createAdam(hyper.learningRate);
  // FedProx anchors the proximal term at the weights received for this round.
  const globalWeights = mu > 0 ? variables.map((v) => tf.clone(v)) : [];
  const labels = exams.map((e) => e.label);

  let steps = 0;
  const plannedSteps = hyper.epochs * Math.ceil(exams.length / batchSize);
  let epochLoss = 0;
  let epochsRun = 0;
  let stoppedEarly = false;
  const validationLosses: number[] = [];
  let best: { epoch: number; loss: number; weights: tf.Tensor[] } | undefined;
  try {
    for (let epoch = 0; epoch < hyper.epochs; epoch++) {
      const order = epochOrder(labels, hyper.classBalanced === true, random);
      epochLoss = 0;
      for (let start = 0; start < order.length; start += batchSize) {
        const batch = order.slice(start, start + batchSize).map((index) => augmentedExam(exams[index], hyper, random));
        epochLoss +=
          pool !== undefined && batch.length > 1
            ? await parallelTrainStep(model, pool, batch, variables, globalWeights, mu, hyper, optimizer)
            : trainStep(model, batch, variables, globalWeights, mu, hyper, optimizer);
        steps += 1;
        hyper.onStep?.(steps, plannedSteps);
        // Yield to the event loop between steps so sockets and timers of the caller run.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      epochLoss /= order.length;
      epochsRun = epoch + 1;

      if (validation.length > 0) {
        // NOTE: the validation loss uses the moving BN statistics as they are after the epoch,
        // before any recalibration, so the best epoch is chosen with slightly stale statistics.
        const loss = await validationLoss(model, validation);
        validationLosses.push(loss);
        if (best === undefined || loss < best.loss) {
          tf.dispose(best?.weights ?? []);
          best = { epoch: epochsRun, loss, weights: model.weights.map((w) => tf.clone(w.read())) };
        } else if (epochsRun - best.epoch >= patience) {
          stoppedEarly = epochsRun < hyper.epochs;
          break;
        }
      }
    }
    if (best !== undefined && best.epoch !== epochsRun) {
      // Moving BN statistics are restored too, because they belong to the best epoch's weights.
      model.weights.forEach((w, i) => w.write(best!.weights[i]));
    }
    if (hyper.recalibrateBatchNorm ?? true) {
      await recalibrateBatchNorm(model, exams, batchSize, hyper.maxSlicesPerExam, random);
    }
  } finally {
    optimizer.dispose();
    tf.dispose(globalWeights);
    tf.dispose(best?.weights ?? []);
  }
  return { loss: epochLoss, steps, epochsRun, validationLosses, bestEpoch: best?.epoch ?? epochsRun, stoppedEarly };
}

function augmentedExam(exam: LabelledExam, hyper: TrainHyperParameters, random: () => number): LabelledExam {
  const window = sliceWindow(exam.input, hyper.maxSlicesPerExam, random);
  return { input: transformExam(window, drawTransform(hyper, random)), label: exam.label };
}

/**
 * Runs one batch and applies one Adam step; returns the summed cross-entropy of the batch.
 * The slices of all exams in the batch go through the backbone together, so batch
 * normalisation computes its statistics over slices of several exams (and classes), as a batch of exams does in
 * the reference implementation. Each exam's slice features are then max-pooled on their own.
 */
function trainStep(
  model: tf.LayersModel,
  batch: LabelledExam[],
  variables: tf.Variable[],
  globalWeights: tf.Tensor[],
  mu: number,
  hyper: TrainHyperParameters,
  optimizer: StepOptimizer,
): number {
  let lossSum = 0;
  const { value, grads } = explainingMemory(batch, () => tf.variableGrads(() => {
    const crossEntropy = batchCrossEntropy(
      model,
      batch.map((e) => e.input),
      batch.map((e) => e.label),
    );
    lossSum = crossEntropy.dataSync()[0];
    let objective = tf.div(crossEntropy, batch.length);
    if (mu > 0) {
      objective = tf.add(objective, tf.mul(proximalTerm(variables, globalWeights), mu / 2));
    }
    return objective as tf.Scalar;
  }, variables));
  try {
    applyStep(
      variables,
      variables.map((v) => grads[v.name]),
      hyper,
      optimizer,
    );
  } finally {
    value.dispose();
    tf.dispose(grads);
  }
  return lossSum;
}

/**
 * Sets each BN layer's moving mean and variance to the average of its batch statistics over
 * the exams, run in batches of `batchSize` exams in training mode without a gradient. The
 * k-th batch (from 0) is folded in with momentum k / (k + 1), which makes the moving value
 * the running average; the layers' own momentum is restored afterwards.
 */
async function recalibrateBatchNorm(
  model: tf.LayersModel,
  exams: LabelledExam[],
  batchSize: number,
  maxSlicesPerExam: number | undefined,
  random: () => number,
): Promise<void> {
  // tfjs-layers reads `momentum` on every training-mode call, so it can be changed between calls.
  const layers = model.layers.filter((l) => l.getClassName() === 'BatchNormalization') as unknown as { momentum: number }[];
  const momentum = layers.map((l) => l.momentum);
  try {
    for (let start = 0, k = 0; start < exams.length; start += batchSize, k++) {
      layers.forEach((l) => {
        l.momentum = k / (k + 1);
      });
      const inputs = exams.slice(start, start + batchSize).map((e) => sliceWindow(e.input, maxSlicesPerExam, random));
      tf.tidy(() => {
        sliceFeatureModel(model).apply(tf.concat(inputs.map((input) => examTensor(input))), { training: true });
      });
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    layers.forEach((l, i) => {
      l.momentum = momentum[i];
    });
  }
}

/** Adds weight decay to the gradients, clips them and applies one Adam step. */
function applyStep(variables: tf.Variable[], objectiveGradients: tf.Tensor[], hyper: TrainHyperParameters, optimizer: StepOptimizer): void {
  tf.tidy(() => {
    let gradients = objectiveGradients;
    const decay = hyper.weightDecay ?? 0;
    if (decay > 0) {
      gradients = gradients.map((g, i) => tf.add(g, tf.mul(variables[i], decay)));
    }
    if (hyper.clipGradientNorm !== undefined) {
      gradients = clipByGlobalNorm(gradients, hyper.clipGradientNorm);
    }
    optimizer.applyGradients(Object.fromEntries(variables.map((v, i) => [v.name, gradients[i]])));
  });
}

/**
 * Runs one batch on the gradient workers and applies one Adam step in this thread; returns
 * the summed cross-entropy. The exams are dealt to the workers in turn. Their gradients of
 * the summed cross-entropy are added, the FedProx gradient mu * (w - w_global) is added
 * here, and the BN moving statistics become the mean of the workers' statistics.
 */
async function parallelTrainStep(
  model: tf.LayersModel,
  pool: GradientWorkerPool,
  batch: LabelledExam[],
  variables: tf.Variable[],
  globalWeights: tf.Tensor[],
  mu: number,
  hyper: TrainHyperParameters,
  optimizer: StepOptimizer,
): Promise<number> {
  const shares: LabelledExam[][] = Array.from({ length: Math.min(pool.size, batch.length) }, () => []);
  batch.forEach((exam, i) => shares[i % shares.length].push(exam));
  // Views of this backend's weights: the pool copies them before anything else allocates.
  const weights = model.weights.map((w) => tensorValues(w.read()));
  // Without a term that needs the mean gradient as a tensor, the optimizer reads the
  // workers' gradients where they are and takes the step in one pass.
  const direct = optimizer.applyMeanGradients !== undefined && mu === 0 && !((hyper.weightDecay ?? 0) > 0) && hyper.clipGradientNorm === undefined;
  const { lossSum, meanGradients } = await pool.gradients(weights, shares, (results) => {
    model.nonTrainableWeights.forEach((w, i) => {
      const mean = sumArrays(results.map((r) => r.movingStatistics[i])).map((v) => v / results.length);
      const value = tf.tensor(mean, w.read().shape);
      w.write(value);
      value.dispose();
    });
    const lossSum = results.reduce((sum, r) => sum + r.lossSum, 0);
    if (direct) {
      optimizer.applyMeanGradients!(new Map(variables.map((v, i) => [v.name, results.map((r) => r.gradients[i])])), batch.length);
      return { lossSum, meanGradients: null };
    }
    return {
      lossSum,
      meanGradients: tf.tidy(() => variables.map((v, i) => tf.tensor(meanInPlace(results.map((r) => r.gradients[i]), batch.length), v.shape))),
    };
  });
  if (meanGradients === null) return lossSum;

  const objectiveGradients =
    mu > 0 ? tf.tidy(() => meanGradients.map((mean, i) => tf.add(mean, tf.mul(tf.sub(variables[i], globalWeights[i]), mu)))) : meanGradients;
  try {
    applyStep(variables, objectiveGradients, hyper, optimizer);
  } finally {
    tf.dispose(objectiveGradients);
    tf.dispose(meanGradients);
  }
  return lossSum;
}

/**
 * Returns the mean of the workers' summed gradients, float32(sum / count), written over
 * the first array. The sum is rounded to float32 after each addition, as tf.add would
 * round it, and the division of that float32 sum rounds once, as tf.div would.
 */
function meanInPlace(arrays: Float32Array[], count: number): Float32Array {
  const [first, ...rest] = arrays;
  if (rest.length === 1) {
    // The common case of two workers, kept to one pass without an inner loop.
    const second = rest[0];
    for (let j = 0; j < first.length; j++) first[j] = Math.fround(first[j] + second[j]) / count;
    return first;
  }
  for (let j = 0; j < first.length; j++) {
    let sum = first[j];
    for (const array of rest) sum = Math.fround(sum + array[j]);
    first[j] = sum / count;
  }
  return first;
}

/** Adds the arrays into the first one and returns it; they arrive from the workers and are used once. */
function sumArrays(arrays: Float32Array[]): Float32Array {
  const sum = arrays[0];
  for (let k = 1; k < arrays.length; k++) {
    addInto(sum, arrays[k]);
  }
  return sum;
}

function addInto(sum: Float32Array, array: Float32Array): void {
  for (let j = 0; j < sum.length; j++) {
    sum[j] += array[j];
  }
}

/**
 * Summed cross-entropy of a batch of exams in training mode. BN normalises with the
 * statistics of all the batch's slices and folds them into its moving statistics.
 * NOTE: with a batch of one exam, BN removes anything common to all of that exam's slices
 * (such as its mean density) in training but not in inference. Batches of several exams
 * keep the two modes close.
 */
function batchCrossEntropy(model: tf.LayersModel, inputs: LabelledExam['input'][], labels: number[]): tf.Scalar {
  const x = tf.concat(inputs.map((input) => examTensor(input)), 0);
  const perSlice = sliceFeatureModel(model).apply(x, { training: true }) as tf.Tensor2D;
  const perExam: tf.Tensor2D[] = [];
  let offset = 0;
  for (const input of inputs) {
    perExam.push(tf.max(tf.slice(perSlice, [offset, 0], [input.slices, -1]), 0, true) as tf.Tensor2D);
    offset += input.slices;
  }
  const logits = model.getLayer('head_dense').apply(tf.concat(perExam, 0)) as tf.Tensor2D;
  return crossEntropySum(logits, labels);
}

function crossEntropySum(logits: tf.Tensor2D, labels: number[]): tf.Scalar {
  const oneHot = tf.tensor2d(
    labels.map((label) => CLASSES.map((_, i) => (i === label ? 1 : 0))),
    [labels.length, CLASSES.length],
  );
  // A one-hot product instead of tf.gather: the gradient of gather needs
  // UnsortedSegmentSum, which the wasm backend does not have.
  return tf.neg(tf.sum(tf.mul(oneHot, tf.logSoftmax(logits)))) as tf.Scalar;
}

/** Mean cross-entropy of the exams in inference mode, BN using its moving statistics. */
export async function validationLoss(model: tf.LayersModel, exams: LabelledExam[]): Promise<number> {
  let sum = 0;
  for (const exam of exams) {
    const loss = tf.tidy(() => crossEntropySum(examLogits(model, examTensor(exam.input)), [exam.label]));
    sum += (await loss.data())[0];
    loss.dispose();
  }
  return sum / exams.length;
}

/** Squared L2 distance between the current trainable weights and the round's global weights. */
function proximalTerm(variables: tf.Variable[], globalWeights: tf.Tensor[]): tf.Scalar {
  const terms = variables.map((v, i) => tf.sum(tf.squaredDifference(v, globalWeights[i])));
  return tf.addN(terms) as tf.Scalar;
}

/**
 * Computes the gradient of the summed cross-entropy of `exams` (one batch, BN in training
 * mode) with respect to the trainable weights, without an optimizer step. BN moving
 * statistics are updated as in a training step. Gradient workers run this on their share.
 * With `collect`, each gradient tensor goes to it (k in trainableWeights order) before
 * it is disposed, and the returned list is empty.
 */
export async function shardGradients(
  model: tf.LayersModel,
  exams: LabelledExam[],
  collect?: (k: number, gradient: tf.Tensor) => void,
): Promise<{ lossSum: number; gradients: Float32Array[] }> {
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const { value, grads } = explainingMemory(exams, () =>
    tf.variableGrads(
      () =>
        batchCrossEntropy(
          model,
          exams.map((e) => e.input),
          exams.map((e) => e.label),
        ),
      variables,
    ),
  );
  try {
    const lossSum = (await value.data())[0];
    const gradients: Float32Array[] = [];
    for (const [k, v] of variables.entries()) {
      if (collect !== undefined) collect(k, grads[v.name]);
      else gradients.push((await grads[v.name].data()) as Float32Array);
    }
    return { lossSum, gradients };
  } finally {
    value.dispose();
    tf.dispose(grads);
  }
}

/**
 * Runs the gradient computation of a training step. When the backend runs out of memory,
 * throws an error that gives the step's size and what to lower instead of the backend's bare
 * message.
 * NOTE: the wasm backend has at most 4 GB of memory per thread, and a ResNet-50 step at 224
 * pixels needs about 0.35 GB per slice, so about 10 slices fit per worker. Steps do not yet
 * split a worker's exams into smaller passes, which batches of long exams would need.
 */
export function explainingMemory<T>(exams: readonly LabelledExam[], compute: () => T): T {
  try {
    return compute();
  } catch (error) {
    if (!(error instanceof Error) || !/memory access out of bounds|out of memory|OOM/i.test(error.message)) throw error;
    const slices = exams.reduce((sum, exam) => sum + exam.input.slices, 0);
    const size = exams[0]?.input.size ?? 0;
    throw new Error(
      `A training step of ${exams.length} exams with ${slices} slices of ${size}x${size} pixels ran out of the backend's memory (${error.message}). ` +
        'Lower batchSize or maxSlicesPerExam, or train with more workers, which split each batch by exam.',
    );
  }
}
