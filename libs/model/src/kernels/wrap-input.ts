import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/**
 * Wraps a kernel input in a Tensor so tf ops can run on it. makeTensorFromTensorInfo does
 * not raise the backend's reference count but dispose() lowers it, so the count is raised
 * here. Without that, disposing the wrapper would free the caller's tensor.
 */
export function wrapInput(info: tf.TensorInfo, backend: BackendWasm): tf.Tensor {
  const tensor = tf.engine().makeTensorFromTensorInfo(info, backend);
  backend.incRef(info.dataId);
  return tensor;
}

/**
 * Hands a tensor computed inside a kernel to the engine as the kernel's output, without
 * copying its values. The wasm buffer gets one more reference before the tensor is
 * disposed, so the buffer survives with the single reference that the engine's output
 * tensor will own, as for a buffer from makeOutput.
 */
export function handOver(tensor: tf.Tensor, backend: BackendWasm, shape: number[] = tensor.shape): tf.TensorInfo {
  const info: tf.TensorInfo = { dataId: tensor.dataId, shape, dtype: tensor.dtype };
  backend.incRef(tensor.dataId);
  tensor.dispose();
  return info;
}

/**
 * Returns a view of a float32 tensor's values on the wasm heap. Allocating on the heap may
 * grow it and detach earlier views, so kernels allocate their outputs first.
 */
export function heapFloats(backend: BackendWasm, tensor: tf.TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(tensor) as Float32Array;
}
