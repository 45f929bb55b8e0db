import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { NativeKernels } from '@covnet/native-kernels';
import { heapFloats } from '../kernels/wrap-input';

/** Kernel name of one fused Adam step (wasm backend, native code). */
export const ADAM_STEP = 'CovnetAdamStep';

/** The part of an optimizer that local training uses, which tf.train.adam's optimizer also has. */
export interface StepOptimizer {
  applyGradients(gradients: tf.NamedTensorMap): void;
  dispose(): void;
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };

export function nativeAdamKernelConfig(native: NativeKernels): tf.KernelConfig {
  const kernelFunc = (args: KernelArgs): tf.TensorInfo[] => {
    const backend = args.backend as BackendWasm;
    const { w, m, v, g } = args.inputs as Record<'w' | 'm' | 'v' | 'g', tf.TensorInfo>;
    const { rate, beta1, beta2, epsilon, correction1, correction2 } = args.attrs as Record<string, number>;
    // Outputs first: allocating may grow the heap, which detaches earlier views.
    const outputs = [w, m, v].map((t) => backend.makeOutput(t.shape, 'float32'));
    const view = (t: tf.TensorInfo): Float32Array => heapFloats(backend, t);
    native.adamStep(view(w), view(m), view(v), view(g), view(outputs[0]), view(outputs[1]), view(outputs[2]), rate, beta1, beta2, epsilon, correction1, correction2);
    return outputs;
  };
  return { kernelName: ADAM_STEP, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc };
}

/**
 * Adam as tf.train.adam computes it (same defaults, bias correction and epsilon outside
 * the square root), with each tensor's step done by one native kernel instead of about
 * ten element-wise ones. The corrections 1 - beta^t are computed in double, where tfjs
 * keeps beta^t in a float32 variable, so weights differ from tfjs's by float32 rounding.
 */
class FusedAdam implements StepOptimizer {
  private readonly moments = new Map<string, { m: tf.Variable; v: tf.Variable }>();
  private step = 0;

  constructor(
    private readonly rate: number,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly epsilon = tf.backend().epsilon(),
  ) {}

  applyGradients(gradients: tf.NamedTensorMap): void {
    this.step += 1;
    const attrs = {
      rate: this.rate,
      beta1: this.beta1,
      beta2: this.beta2,
      epsilon: this.epsilon,
      correction1: 1 - this.beta1 ** this.step,
      correction2: 1 - this.beta2 ** this.step,
    };
    tf.tidy(() => {
      for (const [name, g] of Object.entries(gradients)) {
        const variable = tf.engine().registeredVariables[name];
        if (variable === undefined) {
          throw new Error(`Adam: no variable named '${name}' for its gradient`);
        }
        let state = this.moments.get(name);
        if (state === undefined) {
          state = { m: tf.variable(tf.zerosLike(variable), false), v: tf.variable(tf.zerosLike(variable), false) };
          this.moments.set(name, state);
        }
        const [w, m, v] = tf.engine().runKernel(ADAM_STEP, { w: variable, m: state.m, v: state.v, g }, attrs) as tf.Tensor[];
        variable.assign(w);
        state.m.assign(m);
        state.v.assign(v);
      }
    });
  }

  dispose(): void {
    for (const { m, v } of this.moments.values()) {
      m.dispose();
      v.dispose();
    }
    this.moments.clear();
  }
}

/** Creates an Adam optimizer: the fused one where the backend has its kernel, else tf.train.adam. */
export function createAdam(learningRate: number): StepOptimizer {
  if (tf.getKernel(ADAM_STEP, tf.getBackend()) !== undefined) {
    return new FusedAdam(learningRate);
  }
  const adam = tf.train.adam(learningRate);
  return {
    // tfjs types the map as variables, but its optimizers take gradients keyed by variable name.
    applyGradients: (gradients) => adam.applyGradients(gradients as unknown as Parameters<tf.AdamOptimizer['applyGradients']>[0]),
    dispose: () => adam.dispose(),
  };
}
