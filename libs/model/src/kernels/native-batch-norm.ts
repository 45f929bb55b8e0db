import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { heapFloats } from './wrap-input';
import type { NativeKernels } from '@covnet/native-kernels';

/** Kernel names of the fused training-mode batch normalisation (wasm backend, native code). */
export const BATCH_NORM_TRAINING = 'CovnetBatchNormTraining';
export const BATCH_NORM_TRAINING_GRAD = 'CovnetBatchNormTrainingGrad';

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };


function layout(x: tf.TensorInfo, gamma: tf.TensorInfo, kernel: string): { rows: number; channels: number } {
  const channels = x.shape[x.shape.length - 1];
  if (gamma.shape.length !== 1 || gamma.shape[0] !== channels) {
    throw new Error(`${kernel}: gamma has shape [${gamma.shape}], expected [${channels}] for input [${x.shape}].`);
  }
  return { rows: tf.util.sizeFromShape(x.shape) / channels, channels };
}

/** Returns the kernel configs of batch normalisation, computed by `native` on the wasm heap. */
export function nativeBatchNormKernelConfigs(native: NativeKernels): tf.KernelConfig[] {
  const forward = (args: KernelArgs): tf.TensorInfo[] => {
    const backend = args.backend as BackendWasm;
    const { x, gamma, beta } = args.inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo };
    const { epsilon } = args.attrs as { epsilon: number };
    const { rows, channels } = layout(x, gamma, BATCH_NORM_TRAINING);
    // Outputs first: allocating may grow the heap, which detaches earlier views.
    const y = backend.makeOutput(x.shape, 'float32');
    const mean = backend.makeOutput([channels], 'float32');
    const variance = backend.makeOutput([channels], 'float32');
    native.batchNormTraining(rows, channels, epsilon, heapFloats(backend, x), heapFloats(backend, gamma), heapFloats(backend, beta), heapFloats(backend, y), heapFloats(backend, mean), heapFloats(backend, variance));
    return [y, mean, variance];
  };
  const backward = (args: KernelArgs): tf.TensorInfo[] => {
    const backend = args.backend as BackendWasm;
    const { dy, x, gamma, mean, variance } = args.inputs as Record<'dy' | 'x' | 'gamma' | 'mean' | 'variance', tf.TensorInfo>;
    const { epsilon } = args.attrs as { epsilon: number };
    const { rows, channels } = layout(x, gamma, BATCH_NORM_TRAINING_GRAD);
    const dx = backend.makeOutput(x.shape, 'float32');
    const dgamma = backend.makeOutput([channels], 'float32');
    const dbeta = backend.makeOutput([channels], 'float32');
    native.batchNormTrainingGrad(
      rows,
      channels,
      epsilon,
      heapFloats(backend, dy),
      heapFloats(backend, x),
      heapFloats(backend, gamma),
      heapFloats(backend, mean),
      heapFloats(backend, variance),
      heapFloats(backend, dx),
      heapFloats(backend, dgamma),
      heapFloats(backend, dbeta),
    );
    return [dx, dgamma, dbeta];
  };
  // tfjs's FusedBatchNorm (fixed statistics, as in inference) on wasm is a scalar loop
  // that took about a fifth of a ResNet-50 forward pass once the convolutions were native.
  const stock = tf.getKernel(tf.FusedBatchNorm, 'wasm');
  if (stock === undefined) {
    throw new Error('native batch norm: wasm has no FusedBatchNorm kernel to fall back to');
  }
  const inference = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as BackendWasm;
    const { x, mean, variance, offset, scale } = args.inputs as Record<'x' | 'mean' | 'variance', tf.TensorInfo> & Partial<Record<'offset' | 'scale', tf.TensorInfo>>;
    const { varianceEpsilon } = args.attrs as { varianceEpsilon: number };
    const channels = x.shape[x.shape.length - 1];
    const perChannel = (t: tf.TensorInfo | undefined): boolean => t === undefined || (tf.util.sizeFromShape(t.shape) === channels && t.dtype === 'float32');
    // Statistics that broadcast in any other way, and empty tensors (the native kernel takes
    // positive extents only), go to the stock kernel.
    if (x.dtype !== 'float32' || tf.util.sizeFromShape(x.shape) === 0 || !(varianceEpsilon > 0) || ![mean, variance, offset, scale].every(perChannel)) {
      return stock.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    }
    const y = backend.makeOutput(x.shape, 'float32');
    native.batchNormInference(
      tf.util.sizeFromShape(x.shape) / channels,
      channels,
      varianceEpsilon,
      heapFloats(backend, x),
      heapFloats(backend, mean),
      heapFloats(backend, variance),
      offset === undefined ? null : heapFloats(backend, offset),
      scale === undefined ? null : heapFloats(backend, scale),
      heapFloats(backend, y),
    );
    return y;
  };
  return [
    { kernelName: tf.FusedBatchNorm, backendName: 'wasm', kernelFunc: inference as unknown as tf.KernelFunc, setupFunc: stock.setupFunc },
    { kernelName: BATCH_NORM_TRAINING, backendName: 'wasm', kernelFunc: forward as unknown as tf.KernelFunc },
    { kernelName: BATCH_NORM_TRAINING_GRAD, backendName: 'wasm', kernelFunc: backward as unknown as tf.KernelFunc },
  ];
}

/** Returns whether the active backend has the fused kernels. */
export function hasFusedTrainingBatchNorm(): boolean {
  const backend = tf.getBackend();
  return tf.getKernel(BATCH_NORM_TRAINING, backend) !== undefined && tf.getKernel(BATCH_NORM_TRAINING_GRAD, backend) !== undefined;
}

/**
 * Batch normalisation over all axes but the last, with the batch's statistics, as one
 * differentiable op. Returns y and the batch's mean and biased variance, which the
 * caller owns and must dispose. Only y carries a gradient (to x, gamma and beta), and it
 * already accounts for mean and variance depending on x.
 */
export function fusedTrainingBatchNorm(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number): { y: tf.Tensor; mean: tf.Tensor1D; variance: tf.Tensor1D } {
  let mean: tf.Tensor1D | undefined;
  let variance: tf.Tensor1D | undefined;
  // customGrad passes the inputs and then the save function in one rest parameter.
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xIn, gammaIn, betaIn] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const [y, m, v] = tf.engine().runKernel(BATCH_NORM_TRAINING, { x: xIn, gamma: gammaIn, beta: betaIn }, { epsilon }) as tf.Tensor[];
    // The op's own scope disposes everything but y, so the statistics are kept for the caller.
    mean = tf.keep(m) as tf.Tensor1D;
    variance = tf.keep(v) as tf.Tensor1D;
    save([xIn, gammaIn, m, v]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, g, sm, sv] = saved;
        return tf.engine().runKernel(BATCH_NORM_TRAINING_GRAD, { dy, x: xs, gamma: g, mean: sm, variance: sv }, { epsilon }) as tf.Tensor[];
      },
    };
  });
  const y = op(x, gamma, beta) as tf.Tensor;
  if (mean === undefined || variance === undefined) {
    throw new Error(`${BATCH_NORM_TRAINING} returned no statistics`);
  }
  return { y, mean, variance };
}
