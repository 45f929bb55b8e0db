import * as tf from '@tensorflow/tfjs';

/**
 * Gradient of FusedBatchNorm with broadcasting, registered over the one in tfjs-core 4.22.
 * For a per-channel mean (rank 1), tfjs-core tiles the inverse standard deviation to the
 * activation's full shape and keeps about a dozen activation-sized temporaries until the
 * backward pass ends. This version broadcasts instead and frees its temporaries at once:
 * dx, x - mean and its product with dy. The values are the same. Unlike the kernels, a gradient is registered for all backends.
 */
export const fusedBatchNormGradConfig: tf.GradConfig = {
  kernelName: tf.FusedBatchNorm,
  inputsToSave: ['x', 'mean', 'variance', 'scale'],
  gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
    const gradient = dy as tf.Tensor;
    const { varianceEpsilon } = attrs as unknown as tf.FusedBatchNormAttrs;
    const [x, mean, variance, scale] = saved;
    const paramShape = mean.shape;
    const reductionAxes = tf.backend_util.getReductionAxes(mean.shape, x.shape);
    const sumToParam = (t: tf.Tensor): tf.Tensor => (reductionAxes.length > 0 ? tf.reshape(tf.sum(t, reductionAxes), paramShape) : t);

    const inverseStd = tf.rsqrt(tf.add(variance, varianceEpsilon));
    const scaleValue = scale ?? tf.onesLike(inverseStd);
    const inverseStdTimesScale = tf.mul(inverseStd, scaleValue);
    // Both the variance and the scale gradients need sum(dy * (x - mean)). It is computed
    // here, in its own tidy, because the engine runs each closure below in a separate tidy
    // and a value cached by one closure would be disposed before the next one runs. The
    // per-channel result lives until the backward pass ends; its full-size inputs do not.
    const centredDot = tf.tidy(() => sumToParam(tf.mul(gradient, tf.sub(x, mean))));
    // The mean and offset gradients share sum(dy), a full pass over the activation.
    const gradientSum = sumToParam(gradient);

    return {
      x: () => tf.mul(gradient, inverseStdTimesScale),
      mean: () => tf.mul(gradientSum, tf.neg(inverseStdTimesScale)),
      variance: () => tf.mul(centredDot, tf.mul(tf.mul(tf.pow(inverseStd, 3), scaleValue), -0.5)),
      scale: () => tf.mul(centredDot, inverseStd),
      // A copy, because the engine disposes each input's gradient on its own.
      offset: () => tf.clone(gradientSum),
    };
  },
};
