import * as tf from '@tensorflow/tfjs';
import { fusedBatchNormGradConfig } from './batch-norm-gradient';
import { conv2dBackpropFilterWasmConfig } from './conv2d-backprop-filter';
import { conv2dBackpropInputWasmConfig } from './conv2d-backprop-input';
import { sharingIdentityConfig } from './identity';
import { leadingAxesReductionConfigs } from './leading-axes-reduction';

let registered = false;

/**
 * Registers the wasm kernels that COVNet training needs or that make it faster:
 * Conv2DBackpropFilter, which tfjs-backend-wasm 4.22 lacks; Conv2DBackpropInput, which
 * replaces wasm's own loop with XNNPACK's Conv2D; Sum and Mean over leading axes as a
 * matrix product; Identity without a copy. It also registers the broadcasting
 * FusedBatchNorm gradient, which applies to every backend. Safe to call more than once.
 */
export function registerWasmGradientKernels(): void {
  if (registered) {
    return;
  }
  tf.registerGradient(fusedBatchNormGradConfig);
  // The reductions wrap the built-in kernels, so they are read before anything is replaced.
  const configs = [conv2dBackpropFilterWasmConfig, conv2dBackpropInputWasmConfig, ...leadingAxesReductionConfigs(), sharingIdentityConfig()];
  for (const config of configs) {
    if (tf.getKernel(config.kernelName, config.backendName) !== undefined) {
      // registerKernel would overwrite too, but warns on stderr each time.
      tf.unregisterKernel(config.kernelName, config.backendName);
    }
    tf.registerKernel(config);
  }
  registered = true;
}
