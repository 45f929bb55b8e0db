import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { heapFloats } from './wrap-input';
import type { NativeKernels } from '@covnet/native-kernels';

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };

/**
 * MaxPoolGrad for the wasm backend on the native kernel. wasm's own took about 0.3 s for
 * ResNet-50's one max pool on 4 slices (a tenth of a training step with native
 * convolutions). Dilated or NCHW pools go to the kernel it replaces.
 */
export function nativeMaxPoolGradConfig(native: NativeKernels): tf.KernelConfig {
  const stock = tf.getKernel(tf.MaxPoolGrad, 'wasm');
  if (stock === undefined) {
    throw new Error('native max-pool gradient: wasm has no MaxPoolGrad kernel to fall back to');
  }
  const kernelFunc = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as BackendWasm;
    const { dy, input } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
    const attrs = args.attrs as unknown as tf.MaxPoolGradAttrs;
    // The native kernel takes positive extents only; wasm's own handles empty tensors.
    if (input.shape.length !== 4 || input.dtype !== 'float32' || tf.util.sizeFromShape(input.shape) === 0 || tf.util.sizeFromShape(dy.shape) === 0) {
      return stock.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    }
    const info = tf.backend_util.computePool2DInfo(input.shape as [number, number, number, number], attrs.filterSize, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode);
    if (dy.shape[1] !== info.outHeight || dy.shape[2] !== info.outWidth || dy.shape[3] !== info.outChannels) {
      throw new Error(`MaxPoolGrad (native): dy has shape [${dy.shape}], expected [${info.batchSize}, ${info.outHeight}, ${info.outWidth}, ${info.outChannels}].`);
    }
    const dx = backend.makeOutput(input.shape, 'float32');
    const shape = Int32Array.from([
      info.batchSize,
      info.inHeight,
      info.inWidth,
      info.inChannels,
      info.outHeight,
      info.outWidth,
      info.filterHeight,
      info.filterWidth,
      info.strideHeight,
      info.strideWidth,
      info.padInfo.top,
      info.padInfo.left,
    ]);
    native.maxPoolGrad(
      heapFloats(backend, dy),
      heapFloats(backend, input),
      heapFloats(backend, dx),
      shape,
    );
    return dx;
  };
  return { kernelName: tf.MaxPoolGrad, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc, setupFunc: stock.setupFunc };
}
