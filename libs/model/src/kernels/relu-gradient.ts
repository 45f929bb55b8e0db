import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { NativeKernels } from '@covnet/native-kernels';
import { heapFloats } from './wrap-input';

/** Kernel name of the relu gradient dy * step(x) in one pass (wasm backend, native code). */
export const RELU_GRAD = 'CovnetReluGrad';

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend };

/**
 * Gradient of Relu, registered over the one in tfjs-core 4.22 for every backend. tfjs-core
 * computes dy * cast(step(x)) with three kernels, each a pass over the activation, for each
 * of ResNet-50's 49 relus. Where the backend has RELU_GRAD it runs that one kernel, with
 * the same products; elsewhere it computes tfjs-core's formula.
 */
export const reluGradConfig: tf.GradConfig = {
  kernelName: tf.Relu,
  inputsToSave: ['x'],
  gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
    const gradient = dy as tf.Tensor;
    const [x] = saved;
    const fused = x.dtype === 'float32' && tf.getKernel(RELU_GRAD, tf.getBackend()) !== undefined;
    return { x: () => (fused ? (tf.engine().runKernel(RELU_GRAD, { dy: gradient, x }) as tf.Tensor) : tf.mul(gradient, tf.cast(tf.step(x), 'float32'))) };
  },
};

export function nativeReluGradConfig(native: NativeKernels): tf.KernelConfig {
  const kernelFunc = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as BackendWasm;
    const { dy, x } = args.inputs as { dy: tf.TensorInfo; x: tf.TensorInfo };
    if (!tf.util.arraysEqual(dy.shape, x.shape)) {
      throw new Error(`${RELU_GRAD}: dy has shape [${dy.shape}] and x [${x.shape}], which must be equal.`);
    }
    const dx = backend.makeOutput(x.shape, 'float32');
    if (tf.util.sizeFromShape(x.shape) > 0) native.reluGrad(heapFloats(backend, dy), heapFloats(backend, x), heapFloats(backend, dx));
    return dx;
  };
  return { kernelName: RELU_GRAD, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc };
}
