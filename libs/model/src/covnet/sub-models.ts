import * as tf from '@tensorflow/tfjs';

const sliceFeatureModels = new WeakMap<tf.LayersModel, tf.LayersModel>();

/**
 * Returns the sub-model from the grey slices to the per-slice pooled features
 * ([slices, channels]), built once per model. It shares the model's layers and weights.
 */
export function sliceFeatureModel(model: tf.LayersModel): tf.LayersModel {
  let sub = sliceFeatureModels.get(model);
  if (sub === undefined) {
    sub = tf.model({ inputs: model.inputs, outputs: model.getLayer('slice_pool').output as tf.SymbolicTensor });
    sliceFeatureModels.set(model, sub);
  }
  return sub;
}
