import * as tf from '@tensorflow/tfjs';
import { CLASSES } from './classes';
import { examTensor, flipHorizontally, type LabelledExam } from './exam';
import { seededRandom, shuffledIndices } from './random';
import { sliceFeatureModel } from './sub-models';

export interface TrainHyperParameters {
  epochs: number;
  learningRate: number;
  /** Exams whose gradients are averaged into one Adam step. Default 1. */
  batchSize?: number;
  /** Seed for exam order and augmentation. Default 0. */
  seed?: number;
  /** FedProx proximal weight mu: adds mu/2 * ||w - w_global||^2 to the loss. Default 0 (FedAvg). */
  proximalMu?: number;
  /** Draw exams with probability inversely proportional to their class frequency. Default false. */
  classBalanced?: boolean;
  /** Mirror each exam left-right with probability 1/2. Default false. */
  horizontalFlip?: boolean;
}

export interface TrainResult {
  /** Mean cross-entropy of the exams seen in the last epoch, proximal term excluded. */
  loss: number;
  /** Optimizer steps taken. */
  steps: number;
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
  if (hyper.batchSize !== undefined && (!Number.isInteger(hyper.batchSize) || hyper.batchSize < 1)) {
    throw new Error(`batchSize must be a positive integer, got ${hyper.batchSize}.`);
  }
  if (hyper.proximalMu !== undefined && (!(hyper.proximalMu >= 0) || !Number.isFinite(hyper.proximalMu))) {
    throw new Error(`proximalMu must be a finite number >= 0, got ${hyper.proximalMu}.`);
  }
}

/** Exam indices for one epoch: a shuffle, or a class-balanced draw with replacement of the same length. */
function epochOrder(exams: LabelledExam[], hyper: TrainHyperParameters, random: () => number): number[] {
  if (hyper.classBalanced !== true) {
    return shuffledIndices(exams.length, random);
  }
  const byClass = CLASSES.map((_, label) => exams.flatMap((e, i) => (e.label === label ? [i] : [])));
  const present = byClass.filter((indices) => indices.length > 0);
  return Array.from({ length: exams.length }, () => {
    const indices = present[Math.floor(random() * present.length)];
    return indices[Math.floor(random() * indices.length)];
  });
}

/**
 * Runs local training of `model` on the exams: each step runs a batch of `batchSize` exams
 * (their slices together through the backbone, max-pooled per exam) and one Adam step. Each
 * call makes a fresh Adam optimizer, so moment estimates do not carry over between rounds.
 */
export async function trainModel(model: tf.LayersModel, exams: LabelledExam[], hyper: TrainHyperParameters): Promise<TrainResult> {
  const batchSize = hyper.batchSize ?? 1;
  const mu = hyper.proximalMu ?? 0;
  const random = seededRandom(hyper.seed ?? 0);
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const optimizer = tf.train.adam(hyper.learningRate);
  // FedProx anchors the proximal term at the weights received for this round.
  const globalWeights = mu > 0 ? variables.map((v) => tf.clone(v)) : [];

  let steps = 0;
  let epochLoss = 0;
  try {
    for (let epoch = 0; epoch < hyper.epochs; epoch++) {
      const order = epochOrder(exams, hyper, random);
      epochLoss = 0;
      for (let start = 0; start < order.length; start += batchSize) {
        const batch = order.slice(start, start + batchSize);
        epochLoss += accumulateAndStep(model, exams, batch, variables, globalWeights, mu, hyper, random, optimizer);
        steps += 1;
        // Yield to the event loop between steps so sockets and timers of the caller run.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      epochLoss /= order.length;
    }
  } finally {
    optimizer.dispose();
    tf.dispose(globalWeights);
  }
  return { loss: epochLoss, steps };
}

/**
 * Runs one batch and applies one Adam step; returns the summed cross-entropy of the batch.
 * The slices of all exams in the batch go through the backbone together, so batch
 * normalisation sees slices of several exams (and classes), as a batch of exams does in
 * the reference implementation. Each exam's slice features are then max-pooled on their own.
 */
function accumulateAndStep(
  model: tf.LayersModel,
  exams: LabelledExam[],
  batch: number[],
  variables: tf.Variable[],
  globalWeights: tf.Tensor[],
  mu: number,
  hyper: TrainHyperParameters,
  random: () => number,
  optimizer: tf.Optimizer,
): number {
  const inputs = batch.map((index) =>
    hyper.horizontalFlip === true && random() < 0.5 ? flipHorizontally(exams[index].input) : exams[index].input,
  );
  const labels = batch.map((index) => exams[index].label);
  let lossSum = 0;
  const { value, grads } = tf.variableGrads(() => {
    const crossEntropy = batchCrossEntropy(model, inputs, labels);
    lossSum = crossEntropy.dataSync()[0];
    let objective = tf.div(crossEntropy, batch.length);
    if (mu > 0) {
      objective = tf.add(objective, tf.mul(proximalTerm(variables, globalWeights), mu / 2));
    }
    return objective as tf.Scalar;
  }, variables);
  try {
    optimizer.applyGradients(grads);
  } finally {
    value.dispose();
    tf.dispose(grads);
  }
  return lossSum;
}

/**
 * Summed cross-entropy of a batch of exams in training mode. BN normalises with the
 * statistics of all the batch's slices and folds them into its moving statistics.
 * NOTE: with a batch of one exam, BN removes anything common to all of that exam's slices
 * (such as its mean density) in training but not in inference; batches of several exams
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
  const oneHot = tf.tensor2d(
    labels.map((label) => CLASSES.map((_, i) => (i === label ? 1 : 0))),
    [labels.length, CLASSES.length],
  );
  // A one-hot product instead of tf.gather: the gradient of gather needs
  // UnsortedSegmentSum, which the wasm backend does not have.
  return tf.neg(tf.sum(tf.mul(oneHot, tf.logSoftmax(logits)))) as tf.Scalar;
}

/** Squared L2 distance between the current trainable weights and the round's global weights. */
function proximalTerm(variables: tf.Variable[], globalWeights: tf.Tensor[]): tf.Scalar {
  const terms = variables.map((v, i) => tf.sum(tf.squaredDifference(v, globalWeights[i])));
  return tf.addN(terms) as tf.Scalar;
}
