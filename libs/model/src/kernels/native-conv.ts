import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { heapFloats } from './wrap-input';
import { NativeActivation, type NativeKernels } from '@covnet/native-kernels';

/**
 * Conv2D, FusedConv2D and both convolution gradients for the wasm backend, computed by the
 * native AVX2/FMA kernels of @covnet/native-kernels straight on the wasm heap. XNNPACK
 * in wasm is limited to 128-bit SIMD without fused multiply-add, and the native kernels use
 * 256-bit FMA, which on the 2-core machines of this project made ResNet-50's
 * convolutions several times faster (bench/README.md has the figures).
 *
 * Each kernel falls back to the kernel it replaces for what it does not cover: dilation,
 * NCHW, and FusedConv2D activations other than linear and relu.
 */

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };
type Dilations = number | [number, number] | undefined;

function undilated(dilations: Dilations): boolean {
  if (dilations === undefined) {
    return true;
  }
  return typeof dilations === 'number' ? dilations === 1 : dilations[0] === 1 && dilations[1] === 1;
}

function shapeOf(info: tf.backend_util.Conv2DInfo): Int32Array {
  return Int32Array.from([
    info.batchSize,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.outHeight,
    info.outWidth,
    info.outChannels,
    info.filterHeight,
    info.filterWidth,
    info.strideHeight,
    info.strideWidth,
    info.padInfo.top,
    info.padInfo.left,
  ]);
}

// The native kernels take positive extents only; wasm's own kernels handle empty tensors.
function hasEmptyExtent(info: tf.backend_util.Conv2DInfo): boolean {
  return [info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth, info.outChannels].includes(0);
}

// The gradient of a convolution with an empty input or output: nothing flows, so all zeros.
// wasm's own filter gradient leaves whatever the heap held in its output when the batch is
// empty, so it is no fallback here.
function zeros(backend: BackendWasm, shape: number[]): tf.TensorInfo {
  const out = backend.makeOutput(shape, 'float32');
  heapFloats(backend, out).fill(0);
  return out;
}

// A convolution with an empty input or output: each output value, if there are any (no
// input channels), is the activation of its bias. wasm's own kernels leave whatever the
// heap held in such an output, so they are no fallback here.
function emptyForward(backend: BackendWasm, info: tf.backend_util.Conv2DInfo, activation: NativeActivation, bias: tf.TensorInfo | undefined): tf.TensorInfo {
  const out = backend.makeOutput([info.batchSize, info.outHeight, info.outWidth, info.outChannels], 'float32');
  const y = heapFloats(backend, out);
  const b = bias === undefined ? null : heapFloats(backend, bias);
  for (let i = 0; i < y.length; i++) {
    const v = b === null ? 0 : b[i % info.outChannels];
    // NaN stays NaN, as in tfjs's relu.
    y[i] = activation === NativeActivation.Relu && v < 0 ? 0 : v;
  }
  return out;
}


function nhwc(dataFormat: unknown): boolean {
  return dataFormat === undefined || dataFormat === 'NHWC';
}

/** Kernel configs that use `native`, each falling back to the wasm kernel registered before it. */
export function nativeConvKernelConfigs(native: NativeKernels): tf.KernelConfig[] {
  const previousConfigs = new Map<string, tf.KernelConfig>();
  const previous = (name: string): tf.KernelFunc => {
    const config = tf.getKernel(name, 'wasm');
    if (config === undefined) {
      throw new Error(`native convolution kernels: wasm has no ${name} kernel to fall back to`);
    }
    previousConfigs.set(name, config);
    return config.kernelFunc;
  };
  const conv2d = previous(tf.Conv2D);
  const fused = previous(tf.FusedConv2D);
  const backpropInput = previous(tf.Conv2DBackpropInput);
  const backpropFilter = previous(tf.Conv2DBackpropFilter);

  const forward = (args: KernelArgs, activation: NativeActivation, bias: tf.TensorInfo | undefined): tf.TensorInfo => {
    const backend = args.backend as BackendWasm;
    const { x, filter } = args.inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
    const attrs = args.attrs as unknown as tf.Conv2DAttrs;
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      filter.shape as [number, number, number, number],
      attrs.strides,
      1,
      attrs.pad,
      attrs.dimRoundingMode,
      false,
      'channelsLast',
    );
    if (bias !== undefined && tf.util.sizeFromShape(bias.shape) !== info.outChannels) {
      throw new Error(`FusedConv2D (native): bias has shape [${bias.shape}] for ${info.outChannels} output channels.`);
    }
    if (hasEmptyExtent(info)) {
      return emptyForward(backend, info, activation, bias);
    }
    // The output is allocated before any heap view is taken: growing the heap detaches them.
    const out = backend.makeOutput([info.batchSize, info.outHeight, info.outWidth, info.outChannels], 'float32');
    native.conv2dForward(heapFloats(backend, x), heapFloats(backend, filter), bias === undefined ? null : heapFloats(backend, bias), heapFloats(backend, out), shapeOf(info), activation);
    return out;
  };

  const conv2dNative = (args: KernelArgs): tf.TensorInfo => {
    const attrs = args.attrs as unknown as tf.Conv2DAttrs;
    if (!nhwc(attrs.dataFormat) || !undilated(attrs.dilations)) {
      return conv2d(args) as tf.TensorInfo;
    }
    return forward(args, NativeActivation.Linear, undefined);
  };

  const fusedNative = (args: KernelArgs): tf.TensorInfo => {
    const attrs = args.attrs as unknown as tf.FusedConv2DAttrs;
    const { bias, preluActivationWeights } = args.inputs as { bias?: tf.TensorInfo; preluActivationWeights?: tf.TensorInfo };
    let activation: NativeActivation | null = null;
    if (attrs.activation === 'relu') {
      activation = NativeActivation.Relu;
    } else if (attrs.activation === 'linear' || attrs.activation === undefined) {
      activation = NativeActivation.Linear;
    }
    if (activation === null || preluActivationWeights !== undefined || !nhwc(attrs.dataFormat) || !undilated(attrs.dilations)) {
      return fused(args) as tf.TensorInfo;
    }
    return forward(args, activation, bias);
  };

  const backpropInputNative = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as BackendWasm;
    const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const attrs = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
    if (!nhwc(attrs.dataFormat)) {
      return backpropInput(args) as tf.TensorInfo;
    }
    const inputShape = attrs.inputShape as [number, number, number, number];
    const info = tf.backend_util.computeConv2DInfo(inputShape, filter.shape as [number, number, number, number], attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
    if (hasEmptyExtent(info)) {
      return zeros(backend, inputShape);
    }
    if (dy.shape[1] !== info.outHeight || dy.shape[2] !== info.outWidth || dy.shape[3] !== info.outChannels) {
      throw new Error(`Conv2DBackpropInput (native): dy has shape [${dy.shape}], expected [${info.batchSize}, ${info.outHeight}, ${info.outWidth}, ${info.outChannels}].`);
    }
    const out = backend.makeOutput(inputShape, 'float32');
    native.conv2dBackpropInput(heapFloats(backend, dy), heapFloats(backend, filter), heapFloats(backend, out), shapeOf(info));
    return out;
  };

  const backpropFilterNative = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as BackendWasm;
    const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const attrs = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs & { dilations?: Dilations };
    if (!nhwc(attrs.dataFormat) || !undilated(attrs.dilations)) {
      return backpropFilter(args) as tf.TensorInfo;
    }
    const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
    if (hasEmptyExtent(info)) {
      return zeros(backend, attrs.filterShape);
    }
    if (dy.shape[1] !== info.outHeight || dy.shape[2] !== info.outWidth || dy.shape[3] !== info.outChannels) {
      throw new Error(`Conv2DBackpropFilter (native): dy has shape [${dy.shape}], expected [${info.batchSize}, ${info.outHeight}, ${info.outWidth}, ${info.outChannels}].`);
    }
    const out = backend.makeOutput(attrs.filterShape, 'float32');
    native.conv2dBackpropFilter(heapFloats(backend, x), heapFloats(backend, dy), heapFloats(backend, out), shapeOf(info));
    return out;
  };

  // wasm's kernels bind their wasm functions in setupFunc, which the backend runs when it
  // starts. The fallbacks need it, so each replacement carries it over.
  const config = (kernelName: string, kernelFunc: (args: KernelArgs) => tf.TensorInfo): tf.KernelConfig => ({
    kernelName,
    backendName: 'wasm',
    kernelFunc: kernelFunc as unknown as tf.KernelFunc,
    setupFunc: previousConfigs.get(kernelName)?.setupFunc,
  });
  return [
    config(tf.Conv2D, conv2dNative),
    config(tf.FusedConv2D, fusedNative),
    config(tf.Conv2DBackpropInput, backpropInputNative),
    config(tf.Conv2DBackpropFilter, backpropFilterNative),
  ];
}
