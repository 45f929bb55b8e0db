import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { phaseSplitInputGradient } from './strided-input-gradient';
import { handOver, wrapInput } from './wrap-input';

/**
 * Conv2DBackpropInput for the wasm backend, registered over the one tfjs-backend-wasm 4.22
 * ships. That built-in kernel is a plain C++ loop without SIMD or XNNPACK, and was the
 * largest cost of a ResNet-50 training step on wasm.
 *
 * The input gradient of a convolution is itself a convolution, run here on wasm's XNNPACK
 * Conv2D: dy is padded so that every input pixel receives every filter tap that touched it, and
 * correlated with the filter rotated by 180 degrees and with its channel axes swapped. A
 * strided filter wider than one pixel goes through phaseSplitInputGradient instead, and a
 * strided 1x1 filter is correlated at the sampled pixels and spread out afterwards.
 */
function conv2dBackpropInputWasm(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const attrs = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;

  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC') {
    throw new Error(`Conv2DBackpropInput (wasm): dataFormat '${attrs.dataFormat}' is not supported, only NHWC.`);
  }
  const inputShape = attrs.inputShape as [number, number, number, number];
  const filterShape = filter.shape as [number, number, number, number];
  const info = tf.backend_util.computeConv2DInfo(inputShape, filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
  if (dy.shape[1] !== info.outHeight || dy.shape[2] !== info.outWidth || dy.shape[3] !== info.outChannels) {
    throw new Error(
      `Conv2DBackpropInput (wasm): dy has shape [${dy.shape}], expected [${info.batchSize}, ${info.outHeight}, ${info.outWidth}, ${info.outChannels}].`,
    );
  }

  const dyTensor = wrapInput(dy, backend) as tf.Tensor4D;
  const strided = info.strideHeight > 1 || info.strideWidth > 1;
  if (strided && (filterShape[0] > 1 || filterShape[1] > 1)) {
    try {
      // The filter is copied out of the heap first, because the phase convolutions allocate.
      const filterValues = (backend.typedArrayFromHeap(filter) as Float32Array).slice();
      return phaseSplitInputGradient(dyTensor, filterValues, filterShape, info, backend);
    } finally {
      dyTensor.dispose();
    }
  }
  const rotated = tf.tensor4d(rotateFilter(backend.typedArrayFromHeap(filter) as Float32Array, filterShape), [
    filterShape[0],
    filterShape[1],
    filterShape[3],
    filterShape[2],
  ]);
  try {
    return handOver(
      tf.tidy(() => inputGradient(dyTensor, rotated, info)),
      backend,
    );
  } finally {
    dyTensor.dispose();
    rotated.dispose();
  }
}

/**
 * Rotates a [kh, kw, in, out] filter by 180 degrees and swaps its channel axes, giving
 * [kh, kw, out, in]. Done in JS because wasm's Reverse kernel copies element by element
 * with index arithmetic and took longer than the convolution it prepares.
 */
function rotateFilter(filter: Float32Array, [kh, kw, inChannels, outChannels]: [number, number, number, number]): Float32Array {
  const rotated = new Float32Array(filter.length);
  const tapSize = inChannels * outChannels;
  for (let tap = 0; tap < kh * kw; tap++) {
    const source = (kh * kw - 1 - tap) * tapSize;
    const target = tap * tapSize;
    for (let i = 0; i < inChannels; i++) {
      for (let o = 0; o < outChannels; o++) {
        rotated[target + o * inChannels + i] = filter[source + i * outChannels + o];
      }
    }
  }
  return rotated;
}

/** dx of the convolution from dy and the rotated filter [kh, kw, out, in]. */
function inputGradient(dy: tf.Tensor4D, rotated: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  const { strideHeight, strideWidth, filterHeight, filterWidth, inHeight, inWidth } = info;
  const { top, left } = info.padInfo;

  if (filterHeight === 1 && filterWidth === 1 && top === 0 && left === 0) {
    // A 1x1 filter maps each output pixel to one input pixel, so multiply first and
    // spread afterwards: spreading first would multiply stride^2 times as many zeros.
    const atSampledPixels = tf.conv2d(dy, rotated, 1, 'valid');
    return cropOrPad(spreadByStride(atSampledPixels, strideHeight, strideWidth), 0, inHeight, 0, inWidth);
  }

  // Input row i received dy row o through tap k when o * stride + k = i + top. After
  // spreading, dy row o sits at o * stride; padding by (K - 1 - top) in front lines up
  // every such (o, k) inside a K-tall window starting at row i.
  const spread = spreadByStride(dy, strideHeight, strideWidth);
  const framed = cropOrPad(
    spread,
    filterHeight - 1 - top,
    inHeight + filterHeight - 1,
    filterWidth - 1 - left,
    inWidth + filterWidth - 1,
  );
  return tf.conv2d(framed, rotated, 1, 'valid');
}

/** Puts stride - 1 zero rows (columns) after every row (column): [n, h, w, c] -> [n, h*sh, w*sw, c]. */
function spreadByStride(x: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  if (sh === 1 && sw === 1) {
    return x;
  }
  const [n, h, w, c] = x.shape;
  const sixD = tf.reshape(x, [n, h, 1, w, 1, c]);
  const padded = tf.pad(sixD, [
    [0, 0],
    [0, 0],
    [0, sh - 1],
    [0, 0],
    [0, sw - 1],
    [0, 0],
  ]);
  return tf.reshape(padded, [n, h * sh, w * sw, c]);
}

/**
 * Shifts x down by `before` rows (right by `left` columns) and cuts or zero-fills it to
 * `height` x `width`. A negative shift drops leading rows or columns.
 */
function cropOrPad(x: tf.Tensor4D, before: number, height: number, left: number, width: number): tf.Tensor4D {
  const [, h, w] = x.shape;
  const cropTop = Math.max(0, -before);
  const cropLeft = Math.max(0, -left);
  const keptHeight = Math.min(h - cropTop, height - Math.max(0, before));
  const keptWidth = Math.min(w - cropLeft, width - Math.max(0, left));
  let y = x;
  if (cropTop > 0 || cropLeft > 0 || keptHeight < h || keptWidth < w) {
    y = tf.slice(y, [0, cropTop, cropLeft, 0], [-1, keptHeight, keptWidth, -1]);
  }
  const padTop = Math.max(0, before);
  const padLeft = Math.max(0, left);
  const padBottom = height - padTop - keptHeight;
  const padRight = width - padLeft - keptWidth;
  if (padTop + padBottom + padLeft + padRight > 0) {
    y = tf.pad(y, [
      [0, 0],
      [padTop, padBottom],
      [padLeft, padRight],
      [0, 0],
    ]);
  }
  return y;
}

export const conv2dBackpropInputWasmConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropInput,
  backendName: 'wasm',
  kernelFunc: conv2dBackpropInputWasm as unknown as tf.KernelFunc,
};
