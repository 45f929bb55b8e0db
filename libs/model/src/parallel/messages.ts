import type { CovnetOptions } from '../covnet/covnet';
import type { ExamInput, LabelledExam } from '../covnet/exam';

/** Data a gradient worker starts with: the model it builds a replica of. */
export type WorkerSetup = CovnetOptions;

/**
 * Request: set every model weight from `weights`, which contains their float32 values one
 * after another in model.weights order, then compute the gradient of `exams`. The buffer
 * is shared by every worker and rewritten by the pool only between requests.
 */
export interface GradientRequest {
  kind: 'gradients';
  id: number;
  weights: SharedArrayBuffer;
  exams: LabelledExam[];
}

/** Request: set every model weight as for GradientRequest, then compute the per-slice pooled features of `exam` in inference mode. */
export interface FeatureRequest {
  kind: 'features';
  id: number;
  weights: SharedArrayBuffer;
  exam: ExamInput;
}

export type WorkerRequest = GradientRequest | FeatureRequest;

export type WorkerMessage =
  | { type: 'ready'; backend: string }
  | {
      type: 'gradients';
      id: number;
      lossSum: number;
      /**
       * Gradients of the summed cross-entropy, one after another in model.trainableWeights
       * order. The worker keeps this buffer and writes the next request's gradients into it.
       */
      gradients: SharedArrayBuffer;
      /** Number of values of each gradient in `gradients`. */
      gradientSizes: number[];
      /** Non-trainable weights (BN moving statistics) after the step, in model.nonTrainableWeights order. */
      movingStatistics: Float32Array[];
    }
  | {
      type: 'features';
      id: number;
      /** [slices, channels] pooled features, row-major. */
      features: Float32Array;
      channels: number;
    }
  | { type: 'failed'; id?: number; message: string; stack?: string };
