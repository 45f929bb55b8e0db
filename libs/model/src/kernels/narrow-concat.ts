import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type KernelArgs = { inputs: tf.TensorInfo[]; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };

// Below this many values per row and input, a plain loop beats a subarray and set per row.
const NARROW = 64;

/**
 * Concat for the wasm backend with a fast path for narrow rows. wasm's kernel copies each
 * row of each input with subarray and set, which for COVNet's grey-to-RGB concatenation
 * (rows of one value) took about 0.1 s per 4 slices of 224x224. Other cases, and
 * non-float32 data, go to the kernel it replaces.
 */
export function narrowConcatConfig(): tf.KernelConfig {
  const stock = tf.getKernel(tf.Concat, 'wasm');
  if (stock === undefined) {
    throw new Error('narrow concat: wasm has no Concat kernel to fall back to');
  }
  const kernelFunc = (args: KernelArgs): tf.TensorInfo => {
    const { inputs } = args;
    const backend = args.backend as BackendWasm;
    const nonEmpty = inputs.filter((t) => tf.util.sizeFromShape(t.shape) > 0);
    if (nonEmpty.length < 2 || nonEmpty.some((t) => t.dtype !== 'float32')) {
      return stock.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    }
    const axis = tf.util.parseAxisParam(args.attrs?.axis as number, nonEmpty[0].shape)[0];
    tf.backend_util.assertParamsConsistent(
      inputs.map((t) => t.shape),
      axis,
    );
    const widths = nonEmpty.map((t) => tf.util.sizeFromShape(t.shape.slice(axis)));
    if (widths.some((w) => w > NARROW)) {
      return stock.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    }
    const out = backend.makeOutput(tf.backend_util.computeOutShape(inputs.map((t) => t.shape), axis), 'float32');
    // Views are taken after makeOutput, which may grow and detach the heap.
    const sources = nonEmpty.map((t) => backend.typedArrayFromHeap(t) as Float32Array);
    const target = backend.typedArrayFromHeap(out) as Float32Array;
    const rows = tf.util.sizeFromShape(nonEmpty[0].shape.slice(0, axis));
    const rowWidth = widths.reduce((a, b) => a + b, 0);
    let column = 0;
    for (let i = 0; i < sources.length; i++) {
      const source = sources[i];
      const width = widths[i];
      for (let r = 0; r < rows; r++) {
        const from = r * width;
        const to = r * rowWidth + column;
        for (let k = 0; k < width; k++) {
          target[to + k] = source[from + k];
        }
      }
      column += width;
    }
    return out;
  };
  return { kernelName: tf.Concat, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc, setupFunc: stock.setupFunc };
}
