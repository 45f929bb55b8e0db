import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };
type ReductionAttrs = { axis: number | number[]; keepDims: boolean };

// Below this many rows, the built-in kernel is as fast and the matMul set-up is not worth it.
const MIN_ROWS = 256;

/**
 * Sum and Mean for the wasm backend when the reduced axes are the leading ones, e.g. the
 * per-channel sums over [batch, height, width] of an NHWC activation in batch
 * normalisation and its gradient. wasm's built-in kernels reduce only trailing axes, so
 * they first transpose the whole activation. Here one pass in JS over the wasm heap adds
 * each row into per-column float64 accumulators: 8 ms instead of 45 ms for a
 * [4, 56, 56, 256] activation (one core of a shared two-core machine). A matrix product
 * with a row of ones was as fast in isolation but aborted ResNet-50 training with a
 * corrupted wasm heap. Every other case goes to the built-in kernel.
 */
function leadingAxesReduction(kernelName: 'Sum' | 'Mean', builtIn: tf.KernelFunc): tf.KernelFunc {
  const reduce = (args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] => {
    const backend = args.backend as BackendWasm;
    const x = args.inputs.x as tf.TensorInfo;
    const { axis, keepDims } = args.attrs as unknown as ReductionAttrs;
    const axes = tf.util.parseAxisParam(axis, x.shape).sort((a, b) => a - b);
    const leading = axes.length > 0 && axes.length < x.shape.length && axes.every((a, i) => a === i);
    const rows = axes.reduce((n, a) => n * x.shape[a], 1);
    if (x.dtype !== 'float32' || !leading || rows < MIN_ROWS) {
      return builtIn(args as unknown as Parameters<tf.KernelFunc>[0]);
    }

    const kept = x.shape.slice(axes.length);
    const columns = kept.reduce((n, d) => n * d, 1);
    const outShape = keepDims ? [...axes.map(() => 1), ...kept] : kept;
    // makeOutput may grow the wasm memory, which detaches earlier views of the heap, so
    // both views are taken after it.
    const out = backend.makeOutput(outShape, 'float32');
    const input = backend.typedArrayFromHeap(x) as Float32Array;
    const output = backend.typedArrayFromHeap(out) as Float32Array;
    const sums = new Float64Array(columns);
    for (let row = 0, offset = 0; row < rows; row++, offset += columns) {
      for (let column = 0; column < columns; column++) {
        sums[column] += input[offset + column];
      }
    }
    const scale = kernelName === 'Mean' ? 1 / rows : 1;
    for (let column = 0; column < columns; column++) {
      output[column] = sums[column] * scale;
    }
    return out;
  };
  return reduce as unknown as tf.KernelFunc;
}

/** Kernel configs that wrap the currently registered wasm Sum and Mean kernels. */
export function leadingAxesReductionConfigs(): tf.KernelConfig[] {
  return (['Sum', 'Mean'] as const).map((kernelName) => {
    const builtIn = tf.getKernel(kernelName, 'wasm');
    if (builtIn === undefined) {
      throw new Error(`The wasm backend has no '${kernelName}' kernel to fall back on; is @tensorflow/tfjs-backend-wasm loaded?`);
    }
    // The built-in's setupFunc binds its wasm function when the backend initialises, so
    // it must stay on the replacing config.
    return { ...builtIn, kernelFunc: leadingAxesReduction(kernelName, builtIn.kernelFunc) };
  });
}
