import * as tf from '@tensorflow/tfjs';
import { fusedTrainingBatchNorm, hasFusedTrainingBatchNorm } from '../kernels/native-batch-norm';

type BatchNormArgs = Parameters<typeof tf.layers.batchNormalization>[0];

/** The fields of tfjs-layers' BatchNormalization that the training path reads. */
interface BatchNormFields {
  axis: number;
  momentum: number;
  epsilon: number;
  center: boolean;
  scale: boolean;
  gamma: tf.LayerVariable;
  beta: tf.LayerVariable;
  movingMean: tf.LayerVariable;
  movingVariance: tf.LayerVariable;
}

// tfjs does not export the class itself, only the factory.
const BatchNormalization = tf.layers.batchNormalization({}).constructor as new (args: BatchNormArgs) => tf.layers.Layer;

/**
 * tfjs-layers' BatchNormalization, with training-mode calls computed by the fused native
 * kernel when the backend has it (wasm with @covnet/native-kernels). The stock layer
 * builds training-mode normalisation from about ten element-wise ops and reductions, and
 * their gradients, each a full pass over the activations. In a ResNet-50 training step on
 * wasm they cost about as much as the convolutions once those were native. Inference, and
 * every backend without the kernel, use the stock code. The moving statistics are updated
 * exactly as the stock layer does, from the batch's mean and biased variance, and the
 * class name stays 'BatchNormalization', so weights and saved models are unchanged.
 */
class FusedBatchNormalization extends BatchNormalization {
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
    const layer = this as unknown as BatchNormFields;
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const lastAxis = layer.axis === -1 || layer.axis === x.rank - 1;
    // An empty batch goes to the stock code too: the native kernel takes positive extents only.
    if (kwargs['training'] !== true || !lastAxis || x.size === 0 || !layer.center || !layer.scale || !hasFusedTrainingBatchNorm()) {
      return super.call(inputs, kwargs);
    }
    return tf.tidy(() => {
      const { y, mean, variance } = fusedTrainingBatchNorm(x, layer.gamma.read() as tf.Tensor1D, layer.beta.read() as tf.Tensor1D, layer.epsilon);
      // moving <- moving - (moving - batch) * (1 - momentum), the stock layer's update.
      const decay = 1 - layer.momentum;
      for (const [variable, batch] of [
        [layer.movingMean, mean],
        [layer.movingVariance, variance],
      ] as const) {
        const current = variable.read();
        variable.write(tf.sub(current, tf.mul(tf.sub(current, batch), decay)));
      }
      // The op kept the statistics out of every scope, so tidy would not free them.
      tf.dispose([mean, variance]);
      return y;
    });
  }
}

/** Same arguments and weights as tf.layers.batchNormalization. */
export function batchNormalization(args: BatchNormArgs): tf.layers.Layer {
  return new FusedBatchNormalization(args);
}
