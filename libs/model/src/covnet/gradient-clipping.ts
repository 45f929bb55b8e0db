import * as tf from '@tensorflow/tfjs';

/**
 * Scales the gradients by maxNorm / globalNorm when their global L2 norm (over all
 * tensors together) exceeds maxNorm, so a step's direction is kept and its size bounded.
 * Returns the tensors unchanged otherwise. Call inside tf.tidy.
 */
export function clipByGlobalNorm(gradients: tf.Tensor[], maxNorm: number): tf.Tensor[] {
  const globalNorm = tf.sqrt(tf.addN(gradients.map((g) => tf.sum(tf.square(g)))));
  const factor = tf.minimum(tf.div(maxNorm, tf.maximum(globalNorm, 1e-12)), 1);
  return gradients.map((g) => tf.mul(g, factor));
}
