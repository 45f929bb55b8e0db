import * as tf from '@tensorflow/tfjs';

/**
 * Max over the slices of one exam. The slices of an exam travel as the batch axis, so
 * the layer reduces axis 0 to size 1: [slices, features] -> [1, features].
 */
export class SliceMaxPooling extends tf.layers.Layer {
  static readonly className = 'SliceMaxPooling';

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return [1, ...shape.slice(1)];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return tf.max(x, 0, true);
  }
}

tf.serialization.registerClass(SliceMaxPooling);
