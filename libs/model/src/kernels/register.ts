import * as tf from '@tensorflow/tfjs';
import { conv2dBackpropFilterWasmConfig } from './conv2d-backprop-filter';

const WASM_GRADIENT_KERNELS: tf.KernelConfig[] = [conv2dBackpropFilterWasmConfig];

/**
 * Registers the gradient kernels that tfjs-backend-wasm 4.22 lacks and COVNet training
 * needs. Safe to call more than once; a kernel already registered for wasm is kept.
 */
export function registerWasmGradientKernels(): void {
  for (const config of WASM_GRADIENT_KERNELS) {
    if (tf.getKernel(config.kernelName, config.backendName) === undefined) {
      tf.registerKernel(config);
    }
  }
}
