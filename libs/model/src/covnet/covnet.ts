import * as tf from '@tensorflow/tfjs';
import { buildBackbone, SeededInitializers, type BackboneName } from './backbones';
import { CLASSES } from './classes';
import { gradCam, type GradCamResult } from './grad-cam';
import { examTensor, validateExam, validateLabel, type ExamInput, type LabelledExam } from './exam';
import { readNamedWeights, writeNamedWeights, type NamedWeight } from './named-weights';
import { SliceMaxPooling } from './slice-max-pooling';
import { examLogits } from './sub-models';
import { GradientWorkerPool } from '../parallel/gradient-pool';
import { tensorValues } from '../parallel/shared-values';
import { trainModel, validateHyperParameters, type TrainHyperParameters, type TrainResult } from './training';

export interface CovnetOptions {
  backbone: BackboneName;
  /** Slice width and height in pixels; COVNet uses 224. */
  inputSize: number;
  /** Seed of the weight initializers. Default 0. */
  seed?: number;
  /**
   * Worker threads that predict and evaluate split an exam's slices across, and the default
   * of trainLocal's `workers`. Each holds a wasm backend and a model replica and starts on
   * first use. explain runs in this thread. Default 1: this thread only.
   */
  workers?: number;
}

export type ClassProbabilities = [number, number, number];

export interface Evaluation {
  /** Softmax outputs per exam, in CLASSES order. */
  probs: number[][];
  labels: number[];
}

/**
 * COVNet (Li et al., Radiology 2020): a 2-D backbone shared by the slices of an exam,
 * global average pooling per slice, max over slices, one dense layer and softmax over
 * CLASSES. Data goes in and out as plain arrays, and tensors stay inside.
 */
export class Covnet {
  private disposed = false;

  constructor(
    private readonly model: tf.LayersModel,
    readonly backbone: BackboneName,
    readonly inputSize: number,
    readonly workers = 1,
  ) {}

  /** Class probabilities of one exam, in inference mode (BN uses its moving statistics). */
  async predict(exam: ExamInput): Promise<ClassProbabilities> {
    this.assertUsable();
    validateExam(exam, this.inputSize);
    const pool = exam.slices > 1 ? await this.gradientPool(this.workers) : undefined;
    const logits = pool !== undefined ? await this.parallelLogits(pool, exam) : this.logits(exam);
    const probs = tf.tidy(() => tf.softmax(logits));
    logits.dispose();
    try {
      const values = await probs.data();
      return [values[0], values[1], values[2]];
    } finally {
      probs.dispose();
    }
  }

  /** Copies all weights by name, BN moving mean and variance included. */
  getNamedWeights(): NamedWeight[] {
    this.assertUsable();
    return readNamedWeights(this.model);
  }

  /**
   * Replaces all weights, matched by name and shape.
   * @throws Error on a missing, unexpected or wrong-shaped tensor or a non-finite value;
   *   the model is unchanged then.
   */
  setNamedWeights(weights: NamedWeight[]): void {
    this.assertUsable();
    writeNamedWeights(this.model, weights);
  }

  /**
   * Trains on local exams with Adam and cross-entropy. Weight decay, gradient clipping,
   * FedProx, class balancing, augmentation, early stopping on validation exams and gradient
   * workers are options. TrainHyperParameters lists them with their defaults.
   * @throws Error on an empty exam list, an invalid exam or label, or invalid hyper-parameters.
   */
  async trainLocal(exams: LabelledExam[], hyper: TrainHyperParameters): Promise<TrainResult> {
    this.assertUsable();
    if (exams.length === 0) {
      throw new Error('trainLocal needs at least one exam, got none.');
    }
    exams.forEach((e, i) => {
      validateExam(e.input, this.inputSize, `exam ${i}`);
      validateLabel(e.label, `exam ${i}`);
    });
    (hyper.validationExams ?? []).forEach((e, i) => {
      validateExam(e.input, this.inputSize, `validation exam ${i}`);
      validateLabel(e.label, `validation exam ${i}`);
    });
    validateHyperParameters(hyper);
    return trainModel(this.model, exams, hyper, await this.gradientPool(hyper.workers ?? this.workers));
  }

  /** Probabilities for each exam in inference mode, with the labels passed through. */
  async evaluate(exams: LabelledExam[]): Promise<Evaluation> {
    this.assertUsable();
    exams.forEach((e, i) => {
      validateExam(e.input, this.inputSize, `exam ${i}`);
      validateLabel(e.label, `exam ${i}`);
    });
    const probs: number[][] = [];
    for (const exam of exams) {
      probs.push(await this.predict(exam.input));
    }
    return { probs, labels: exams.map((e) => e.label) };
  }

  /**
   * Computes a Grad-CAM heatmap of the exam for `classIndex`, by default the predicted class.
   * @throws Error on an invalid exam or class index.
   */
  async explain(exam: ExamInput, classIndex?: number): Promise<GradCamResult> {
    this.assertUsable();
    validateExam(exam, this.inputSize);
    const features = this.lastFeatureMaps(exam) as tf.Tensor4D;
    try {
      const head = {
        slicePool: this.model.getLayer('slice_pool'),
        examMax: this.model.getLayer('exam_max'),
        dense: this.model.getLayer('head_dense'),
      };
      return await gradCam(features, head, this.inputSize, classIndex);
    } finally {
      features.dispose();
    }
  }

  /**
   * Computes the backbone's last feature map per slice, [slices, h, w, channels], in
   * inference mode: the maps that the head pools and Grad-CAM weights.
   */
  async featureMaps(exam: ExamInput): Promise<{ shape: number[]; data: Float32Array }> {
    this.assertUsable();
    validateExam(exam, this.inputSize);
    const features = this.lastFeatureMaps(exam);
    try {
      return { shape: [...features.shape], data: (await features.data()) as Float32Array };
    } finally {
      features.dispose();
    }
  }

  /** Number of trainable scalars (BN moving statistics excluded). */
  countTrainableParameters(): number {
    this.assertUsable();
    return this.model.trainableWeights.reduce((n, w) => n + w.read().size, 0);
  }

  dispose(): void {
    if (!this.disposed) {
      const pool = this.pool;
      this.pool = undefined;
      pool?.close().catch((error: Error) => process.emitWarning(`Closing the gradient workers failed: ${error.message}`, 'CovnetWarning'));
      // Only the full model is disposed: the feature sub-model shares its layers, and
      // disposing both would dispose those layers twice, which tfjs-layers rejects.
      this.model.dispose();
      this.features = undefined;
      this.disposed = true;
    }
  }

  private features?: tf.LayersModel;
  private pool?: GradientWorkerPool;

  /**
   * Returns a pool of `workers` gradient workers, started on first use and kept until
   * dispose, or undefined for one worker (train in this thread).
   */
  private async gradientPool(workers: number): Promise<GradientWorkerPool | undefined> {
    if (workers <= 1) {
      return undefined;
    }
    if (this.pool !== undefined && !this.pool.usable && this.pool.size === workers) {
      process.emitWarning(`A gradient worker stopped, so ${workers} new gradient workers start.`, 'CovnetWarning');
    }
    if (this.pool?.size !== workers || !this.pool.usable) {
      await this.pool?.close();
      this.pool = await GradientWorkerPool.start(workers, { backbone: this.backbone, inputSize: this.inputSize });
    }
    return this.pool;
  }

  /**
   * Computes the backbone's last feature maps in inference mode, a few slices per pass as in
   * predict, because one pass over a 64-slice ResNet-50 exam would exceed wasm's heap.
   */
  private lastFeatureMaps(exam: ExamInput): tf.Tensor {
    return tf.tidy(() => this.featureModel().predict(examTensor(exam), { batchSize: 8 }) as tf.Tensor);
  }

  /** Sub-model from the input to the backbone output; it shares the weights of the full model. */
  private featureModel(): tf.LayersModel {
    if (this.features === undefined) {
      const output = this.model.getLayer('slice_pool').input as tf.SymbolicTensor;
      this.features = tf.model({ inputs: this.model.inputs, outputs: output, name: `${this.model.name}_features` });
    }
    return this.features;
  }

  private logits(exam: ExamInput): tf.Tensor2D {
    return tf.tidy(() => examLogits(this.model, examTensor(exam)));
  }

  /**
   * Computes the logits with the exam's slices split into contiguous parts, one per worker:
   * the workers return per-slice features, and the max over slices and the dense layer
   * run here.
   */
  private async parallelLogits(pool: GradientWorkerPool, exam: ExamInput): Promise<tf.Tensor2D> {
    const parts = Math.min(pool.size, exam.slices);
    const pixels = exam.size * exam.size;
    const inputs: ExamInput[] = [];
    for (let part = 0; part < parts; part++) {
      const first = Math.floor((part * exam.slices) / parts);
      const end = Math.floor(((part + 1) * exam.slices) / parts);
      inputs.push({ slices: end - first, size: exam.size, data: exam.data.slice(first * pixels, end * pixels) });
    }
    const weights = this.model.weights.map((w) => tensorValues(w.read()));
    const results = await pool.features(weights, inputs);
    return tf.tidy(() => {
      const perSlice = tf.concat(results.map((r) => tf.tensor2d(r.features, [r.features.length / r.channels, r.channels])));
      const perExam = this.model.getLayer('exam_max').apply(perSlice) as tf.Tensor2D;
      return this.model.getLayer('head_dense').apply(perExam) as tf.Tensor2D;
    });
  }

  private assertUsable(): void {
    if (this.disposed) {
      throw new Error('This Covnet has been disposed.');
    }
  }
}

/**
 * Builds a COVNet with deterministic weights for the seed. The graph maps a grey exam
 * [slices, S, S, 1] to logits [1, 3]; every layer has a fixed name so weight names are
 * the same in every process.
 * @throws Error for an unknown backbone, an input size below 32 pixels or an invalid worker count.
 */
export function createCovnet(opts: CovnetOptions): Covnet {
  const workers = opts.workers ?? 1;
  if (!Number.isInteger(workers) || workers < 1) {
    throw new Error(`workers must be a positive integer, got ${workers}.`);
  }
  return new Covnet(buildCovnetModel(opts), opts.backbone, opts.inputSize, workers);
}

/**
 * Builds the tfjs-layers graph of createCovnet; gradient workers call it to hold a replica.
 * @throws Error for an unknown backbone or an input size below 32 pixels.
 */
export function buildCovnetModel(opts: CovnetOptions): tf.LayersModel {
  const { backbone, inputSize } = opts;
  if (!['resnet50', 'resnet18', 'small'].includes(backbone)) {
    throw new Error(`Unknown backbone '${backbone}': expected resnet50, resnet18 or small.`);
  }
  // Every backbone downsamples by at least 16 (small) or 32 (ResNets).
  if (!Number.isInteger(inputSize) || inputSize < 32) {
    throw new Error(`inputSize must be an integer of at least 32 pixels, got ${inputSize}.`);
  }
  const init = new SeededInitializers(opts.seed ?? 0);

  const grey = tf.input({ shape: [inputSize, inputSize, 1], name: 'slices' });
  // The reference COVNet feeds ImageNet-style 3-channel input, so the grey slice is repeated.
  const rgb = tf.layers.concatenate({ axis: -1, name: 'grey_to_rgb' }).apply([grey, grey, grey]) as tf.SymbolicTensor;
  const features = buildBackbone(backbone, rgb, init);
  const perSlice = tf.layers.globalAveragePooling2d({ name: 'slice_pool' }).apply(features) as tf.SymbolicTensor;
  const perExam = new SliceMaxPooling({ name: 'exam_max' }).apply(perSlice) as tf.SymbolicTensor;
  const logits = tf.layers
    .dense({ units: CLASSES.length, name: 'head_dense', kernelInitializer: init.glorotUniform(), biasInitializer: 'zeros' })
    .apply(perExam) as tf.SymbolicTensor;

  return tf.model({ inputs: grey, outputs: logits, name: `covnet_${backbone}` });
}
