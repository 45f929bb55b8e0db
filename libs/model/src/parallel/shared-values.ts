import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { heapFloats } from '../kernels/wrap-input';

/**
 * Returns float32 views of `buffer`, one per size, laid out one after another.
 * @throws Error naming `label` when the buffer does not hold exactly the sizes' values.
 */
export function concatenatedViews(buffer: ArrayBufferLike, sizes: readonly number[], label: string): Float32Array[] {
  const total = sizes.reduce((a, b) => a + b, 0);
  if (buffer.byteLength !== total * Float32Array.BYTES_PER_ELEMENT) {
    throw new Error(`${label} hold ${buffer.byteLength / Float32Array.BYTES_PER_ELEMENT} float32 values, the model has ${total}.`);
  }
  let offset = 0;
  return sizes.map((size) => {
    const view = new Float32Array(buffer, offset * Float32Array.BYTES_PER_ELEMENT, size);
    offset += size;
    return view;
  });
}

/**
 * Returns the values of a float32 tensor. On wasm this is a view of the heap, valid only
 * until the next allocation on the backend; elsewhere it is what dataSync returns.
 */
export function tensorValues(tensor: tf.Tensor): Float32Array {
  if (tensor.dtype !== 'float32') throw new Error(`expected a float32 tensor, got ${tensor.dtype}.`);
  const backend = tf.backend();
  // The wasm backend's dataSync copies the values out of the heap; a view saves that copy.
  if (tf.getBackend() === 'wasm') return heapFloats(backend as BackendWasm, tensor);
  return tensor.dataSync() as Float32Array;
}

/** Copies a float32 tensor's values into `target`, which must have its size. */
export function copyValues(tensor: tf.Tensor, target: Float32Array): void {
  if (tensor.size !== target.length) throw new Error(`a tensor of ${tensor.size} values does not fit ${target.length}.`);
  target.set(tensorValues(tensor));
}
