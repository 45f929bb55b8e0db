import * as tf from '@tensorflow/tfjs';
import { CLASSES } from './classes';

/** Grad-CAM of one exam for one class. */
export interface GradCamResult {
  /** Class the map explains, an index into CLASSES. */
  classIndex: number;
  /** Softmax outputs of the exam, in CLASSES order. */
  probs: number[];
  slices: number;
  size: number;
  /** [slices, size, size] map in [0, 1], bilinearly upsampled and scaled by the exam's maximum. */
  heatmap: Float32Array;
  /** Side of the last feature map, e.g. 7 for ResNet-50 at 224 pixels. */
  featureSize: number;
  /** [slices, featureSize, featureSize] ReLU of the gradient-weighted feature maps, unscaled. */
  rawCam: Float32Array;
}

/** Layers of the COVNet head, applied eagerly to a feature map. */
export interface CovnetHead {
  slicePool: tf.layers.Layer;
  examMax: tf.layers.Layer;
  dense: tf.layers.Layer;
}

function headLogits(head: CovnetHead, features: tf.Tensor4D): tf.Tensor2D {
  const pooled = head.slicePool.apply(features) as tf.Tensor;
  return head.dense.apply(head.examMax.apply(pooled)) as tf.Tensor2D;
}

/**
 * Computes Grad-CAM on the backbone's last feature map: each
 * channel is weighted by the spatial mean of the class logit's gradient, summed, passed
 * through ReLU and upsampled to the slice size. Because COVNet max-pools over slices, only
 * the slice that wins the max for a channel receives that channel's gradient.
 * @throws Error when classIndex is not 0, 1 or 2.
 */
export async function gradCam(features: tf.Tensor4D, head: CovnetHead, size: number, classIndex?: number): Promise<GradCamResult> {
  if (classIndex !== undefined && !(Number.isInteger(classIndex) && classIndex >= 0 && classIndex < CLASSES.length)) {
    throw new Error(`classIndex must be 0, 1 or 2, got ${classIndex}.`);
  }
  const [slices, featureSize] = features.shape;
  const probsTensor = tf.tidy(() => tf.softmax(headLogits(head, features)));
  const probs = Array.from(await probsTensor.data());
  probsTensor.dispose();
  const target = classIndex ?? probs.indexOf(Math.max(...probs));

  const [raw, upsampled] = tf.tidy(() => {
    const oneHot = tf.oneHot(tf.tensor1d([target], 'int32'), CLASSES.length).toFloat();
    const classLogit = (f: tf.Tensor): tf.Scalar => tf.sum(tf.mul(headLogits(head, f as tf.Tensor4D), oneHot));
    const gradient = tf.grad(classLogit)(features);
    const channelWeights = tf.mean(gradient, [1, 2], true);
    const cam = tf.relu(tf.sum(tf.mul(features, channelWeights), 3, true)) as tf.Tensor4D;
    const resized = tf.image.resizeBilinear(cam, [size, size]);
    const peak = tf.max(resized);
    // An all-zero map stays zero instead of dividing by zero.
    const scaled = tf.where(tf.greater(peak, 0), tf.div(resized, tf.maximum(peak, 1e-12)), tf.zerosLike(resized));
    return [cam, scaled];
  });
  try {
    const rawCam = (await raw.data()) as Float32Array;
    const heatmap = (await upsampled.data()) as Float32Array;
    return { classIndex: target, probs, slices, size, heatmap, featureSize, rawCam };
  } finally {
    tf.dispose([raw, upsampled]);
  }
}
