import * as tf from '@tensorflow/tfjs';
import { fusedBatchNormGradConfig } from './batch-norm-gradient';
import { nativeReluGradConfig, reluGradConfig } from './relu-gradient';
import { conv2dBackpropFilterWasmConfig } from './conv2d-backprop-filter';
import { conv2dBackpropInputWasmConfig } from './conv2d-backprop-input';
import { sharingIdentityConfig } from './identity';
import { leadingAxesReductionConfigs } from './leading-axes-reduction';
import { narrowConcatConfig } from './narrow-concat';
import { nativeBatchNormKernelConfigs } from './native-batch-norm';
import { nativeConvKernelConfigs } from './native-conv';
import { nativeMaxPoolGradConfig } from './native-pool';
import { nativeAdamKernelConfigs } from '../covnet/fused-adam';
import { loadNativeKernels } from '@covnet/native-kernels';

/** The code that computes wasm's convolutions, batch normalisation and max-pool gradient. */
export interface ConvolutionKernels {
  kind: 'native-avx2' | 'wasm';
  /** With the native kernels: the instruction set of their convolutions, AVX-512 where the CPU has it. */
  instructions?: 'avx512' | 'avx2';
  /** The reason the native kernels are not used, absent when they are. */
  reason?: string;
}

let registered: ConvolutionKernels | undefined;

/**
 * Registers the wasm kernels that COVNet training needs or that make it faster:
 * Conv2DBackpropFilter, which tfjs-backend-wasm 4.22 lacks; Conv2DBackpropInput, which
 * replaces wasm's own loop with XNNPACK's Conv2D; Sum and Mean over leading axes as a
 * matrix product; Identity without a copy; Concat of narrow rows as a plain loop. It also registers the broadcasting
 * FusedBatchNorm gradient and a Relu gradient that runs one kernel where there is one, both for every backend. Safe to call more than once.
 */
export function registerWasmGradientKernels(): ConvolutionKernels {
  if (registered !== undefined) {
    return registered;
  }
  tf.registerGradient(fusedBatchNormGradConfig);
  tf.registerGradient(reluGradConfig);
  // The reductions wrap the built-in kernels, so they are read before anything is replaced.
  const configs = [conv2dBackpropFilterWasmConfig, conv2dBackpropInputWasmConfig, ...leadingAxesReductionConfigs(), sharingIdentityConfig(), narrowConcatConfig()];
  replaceKernels(configs);
  // The native kernels fall back to the kernels registered above, so they come last.
  const native = loadNativeKernels();
  if (native.kernels !== null) {
    replaceKernels([...nativeConvKernelConfigs(native.kernels), ...nativeBatchNormKernelConfigs(native.kernels), nativeMaxPoolGradConfig(native.kernels), nativeReluGradConfig(native.kernels), ...nativeAdamKernelConfigs(native.kernels)]);
    registered = { kind: 'native-avx2', instructions: native.kernels.convolutionInstructions() };
  } else {
    registered = { kind: 'wasm', reason: native.reason };
  }
  return registered;
}

function replaceKernels(configs: tf.KernelConfig[]): void {
  for (const config of configs) {
    if (tf.getKernel(config.kernelName, config.backendName) !== undefined) {
      // registerKernel would overwrite too, but warns on stderr each time.
      tf.unregisterKernel(config.kernelName, config.backendName);
    }
    tf.registerKernel(config);
  }
}
