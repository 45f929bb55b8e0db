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

/** Slices per backbone pass in inference; bounds the memory of predict and evaluate. */
const PREDICT_SLICES_PER_BATCH = 8;

/**
 * Computes an exam's logits [1, 3] in inference mode. The backbone runs on
 * PREDICT_SLICES_PER_BATCH slices at a time through LayersModel.predict, which frees each
 * layer's output once the next layers have used it, so memory does not grow with the
 * exam's slice count. A ResNet-50 at 224 pixels keeps roughly 120 MB of activations per
 * slice, which for a 64-slice exam in one pass would exceed wasm's 4 GB heap.
 */
export function examLogits(model: tf.LayersModel, slices: tf.Tensor4D): tf.Tensor2D {
  return tf.tidy(() => {
    const perSlice = sliceFeatureModel(model).predict(slices, { batchSize: PREDICT_SLICES_PER_BATCH }) as tf.Tensor2D;
    const perExam = model.getLayer('exam_max').apply(perSlice) as tf.Tensor2D;
    return model.getLayer('head_dense').apply(perExam) as tf.Tensor2D;
  });
}
