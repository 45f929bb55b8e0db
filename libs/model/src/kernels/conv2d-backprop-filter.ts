import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/**
 * Conv2DBackpropFilter for the wasm backend, which tfjs-backend-wasm 4.22 does not ship.
 *
 * The filter gradient is dW[kh, kw, ci, co] = sum over (n, oh, ow) of
 * xPadded[n, oh*sh + kh, ow*sw + kw, ci] * dy[n, oh, ow, co], which is itself a
 * convolution of the input with dy, run here on the wasm (XNNPACK) Conv2D kernel. One
 * strided slice and one BatchMatMul per tap was 10 to 20 times slower for stride 2
 * (measured on 16 slices of 64x64, one core), because wasm's StridedSlice copies element
 * by element. Only the final filter-sized result is copied into the kernel output.
 */
function conv2dBackpropFilterWasm(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const attrs = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs & { dilations?: number | [number, number] };

  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC') {
    throw new Error(`Conv2DBackpropFilter (wasm): dataFormat '${attrs.dataFormat}' is not supported, only NHWC.`);
  }
  // tfjs-core rejects conv2d gradients with dilation > 1 before reaching this kernel, and
  // the kernel attributes carry no dilations; the check guards direct callers.
  const dilations = attrs.dilations ?? 1;
  const [dilationH, dilationW] = typeof dilations === 'number' ? [dilations, dilations] : dilations;
  if (dilationH !== 1 || dilationW !== 1) {
    throw new Error(`Conv2DBackpropFilter (wasm): dilations [${dilationH}, ${dilationW}] are not supported, only 1.`);
  }

  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
  if (dy.shape[1] !== info.outHeight || dy.shape[2] !== info.outWidth || dy.shape[3] !== info.outChannels) {
    throw new Error(
      `Conv2DBackpropFilter (wasm): dy has shape [${dy.shape}], expected [${info.batchSize}, ${info.outHeight}, ${info.outWidth}, ${info.outChannels}].`,
    );
  }

  const xTensor = wrapInput(x, backend) as tf.Tensor4D;
  const dyTensor = wrapInput(dy, backend) as tf.Tensor4D;
  let gradient: tf.Tensor | undefined;
  try {
    // tidy must return the tensor, not its values: tidy walks every key of a returned
    // object looking for tensors, which takes seconds for a 2.4 M element Float32Array.
    gradient = tf.tidy(() => filterGradient(xTensor, dyTensor, info));
    return backend.makeOutput(attrs.filterShape, 'float32', undefined, gradient.dataSync());
  } finally {
    gradient?.dispose();
    xTensor.dispose();
    dyTensor.dispose();
  }
}

/**
 * Wraps a kernel input in a Tensor so tf ops can run on it. makeTensorFromTensorInfo does
 * not raise the backend's reference count but dispose() lowers it, so the count is raised
 * here. Without that, disposing the wrapper would free the caller's tensor.
 */
function wrapInput(info: tf.TensorInfo, backend: BackendWasm): tf.Tensor {
  const tensor = tf.engine().makeTensorFromTensorInfo(info, backend);
  backend.incRef(info.dataId);
  return tensor;
}

function filterGradient(x: tf.Tensor4D, dy: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  const { top, bottom, left, right } = info.padInfo;
  const { inChannels, outChannels, strideHeight, strideWidth, filterHeight, filterWidth } = info;
  const padded = top + bottom + left + right > 0 ? tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]]) : x;

  // Batch and channel axes swap roles: x becomes [Cin, H, W, N] and dy the filter
  // [OH, OW, N, Cout], dilated by the forward stride. Output pixel (kh, kw) of this
  // convolution then sums xPadded[n, oh*sh + kh, ow*sw + kw, ci] * dy[n, oh, ow, co].
  const xByChannel = tf.transpose(padded, [3, 1, 2, 0]);
  const dyAsFilter = tf.transpose(dy, [1, 2, 0, 3]);
  const correlation = tf.conv2d(xByChannel, dyAsFilter, 1, 'valid', 'NHWC', [strideHeight, strideWidth]);

  // With 'valid' padding and a stride that does not divide the input, the rows and columns
  // past the last window produce extra output pixels. Those are not filter taps.
  const taps = tf.slice(correlation, [0, 0, 0, 0], [inChannels, filterHeight, filterWidth, outChannels]);
  return tf.transpose(taps, [1, 2, 0, 3]);
}

export const conv2dBackpropFilterWasmConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: 'wasm',
  kernelFunc: conv2dBackpropFilterWasm as unknown as tf.KernelFunc,
};
