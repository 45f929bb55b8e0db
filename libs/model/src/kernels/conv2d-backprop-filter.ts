import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { handOver, wrapInput } from './wrap-input';

/**
 * Conv2DBackpropFilter for the wasm backend, which tfjs-backend-wasm 4.22 does not ship.
 *
 * The filter gradient is dW[kh, kw, ci, co] = sum over (n, oh, ow) of
 * xPadded[n, oh*sh + kh, ow*sw + kw, ci] * dy[n, oh, ow, co], which is itself a
 * convolution of the input with dy, run here on the wasm (XNNPACK) Conv2D kernel. One
 * strided slice and one BatchMatMul per tap was 10 to 20 times slower for stride 2
 * (measured on 16 slices of 64x64, one core), because wasm's StridedSlice copies element
 * by element.
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

  const { top, bottom, left, right } = info.padInfo;
  const pointwise = info.filterHeight === 1 && info.filterWidth === 1 && top + bottom + left + right === 0;
  const strided = info.strideHeight > 1 || info.strideWidth > 1;
  // A strided 1x1 convolution reads only the pixels at multiples of the stride. Taking
  // those out first turns its filter gradient into one matrix product, as for stride 1.
  // For ResNet-50's stride-2 shortcuts (4 slices) one run took 69 to 90 ms against 265 to
  // 546 ms on the convolution path (one core of a two-core machine at load average 9).
  const xTensor = pointwise && strided ? sampledPixels(x, backend, info) : (wrapInput(x, backend) as tf.Tensor4D);
  const dyTensor = wrapInput(dy, backend) as tf.Tensor4D;
  try {
    return handOver(
      tf.tidy(() => (pointwise ? pointwiseFilterGradient(xTensor, dyTensor, info.inChannels, info.outChannels) : filterGradient(xTensor, dyTensor, info))),
      backend,
    );
  } finally {
    xTensor.dispose();
    dyTensor.dispose();
  }
}

/** Copies x at rows oh * strideHeight and columns ow * strideWidth: [n, outHeight, outWidth, in]. */
function sampledPixels(x: tf.TensorInfo, backend: BackendWasm, info: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, strideHeight, strideWidth } = info;
  const source = backend.typedArrayFromHeap(x) as Float32Array;
  const sampled = new Float32Array(batchSize * outHeight * outWidth * inChannels);
  for (let n = 0; n < batchSize; n++) {
    for (let oh = 0; oh < outHeight; oh++) {
      for (let ow = 0; ow < outWidth; ow++) {
        const from = ((n * inHeight + oh * strideHeight) * inWidth + ow * strideWidth) * inChannels;
        sampled.set(source.subarray(from, from + inChannels), ((n * outHeight + oh) * outWidth + ow) * inChannels);
      }
    }
  }
  // The copy is complete before tensor4d allocates on the heap, which could detach `source`.
  return tf.tensor4d(sampled, [batchSize, outHeight, outWidth, inChannels]);
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

/**
 * Computes dW = x^T dy for a 1x1 filter as one matrix product over all pixels of x (taken
 * at the stride when it exceeds 1). wasm's matMul with transposeA was three times slower than an explicit transpose,
 * so the smaller operand is transposed first. For x [4, 56, 56, 256] this took 17 ms
 * against 78 ms on the convolution path (one core of a shared two-core machine).
 */
function pointwiseFilterGradient(x: tf.Tensor4D, dy: tf.Tensor4D, inChannels: number, outChannels: number): tf.Tensor4D {
  const pixels = x.size / inChannels;
  const xMatrix = tf.reshape(x, [pixels, inChannels]);
  const dyMatrix = tf.reshape(dy, [pixels, outChannels]);
  const product =
    inChannels <= outChannels
      ? tf.matMul(tf.transpose(xMatrix), dyMatrix)
      : tf.transpose(tf.matMul(tf.transpose(dyMatrix), xMatrix));
  return tf.reshape(product, [1, 1, inChannels, outChannels]);
}

export const conv2dBackpropFilterWasmConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: 'wasm',
  kernelFunc: conv2dBackpropFilterWasm as unknown as tf.KernelFunc,
};
