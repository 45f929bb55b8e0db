import type { CovnetOptions } from '../covnet/covnet';
import type { ExamInput, LabelledExam } from '../covnet/exam';

/** Data a gradient worker starts with: the model it builds a replica of. */
export type WorkerSetup = CovnetOptions;

/** Request: set every model weight (model.weights order), then compute the gradient of `exams`. */
export interface GradientRequest {
  kind: 'gradients';
  id: number;
  weights: Float32Array[];
  exams: LabelledExam[];
}

/** Request: set every model weight, then compute the per-slice pooled features of `exam` in inference mode. */
export interface FeatureRequest {
  kind: 'features';
  id: number;
  weights: Float32Array[];
  exam: ExamInput;
}

export type WorkerRequest = GradientRequest | FeatureRequest;

export type WorkerMessage =
  | { type: 'ready'; backend: string }
  | {
      type: 'gradients';
      id: number;
      lossSum: number;
      /** Gradients of the summed cross-entropy, in model.trainableWeights order. */
      gradients: Float32Array[];
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
