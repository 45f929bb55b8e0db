import { availableParallelism } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { NativeKernels } from '@covnet/native-kernels';
import { heapFloats } from '../kernels/wrap-input';

/** Kernel name of one fused Adam step (wasm backend, native code). */
export const ADAM_STEP = 'CovnetAdamStep';
/** Kernel name of a fused Adam step whose gradient is the mean of gradient workers' sums, read where they left them. */
export const ADAM_MEAN_STEP = 'CovnetAdamMeanStep';

/** The part of an optimizer that local training uses, which tf.train.adam's optimizer also has. */
export interface StepOptimizer {
  applyGradients(gradients: tf.NamedTensorMap): void;
  /**
   * Applies one step whose gradient for each variable is float32(sum of its parts) /
   * divisor, reading the parts in place. The weights are those of applyGradients with
   * that mean, which is never made a tensor. Only the fused optimizer has this method.
   */
  applyMeanGradients?(parts: Map<string, readonly Float32Array[]>, divisor: number): void;
  dispose(): void;
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };

// Threads of one mean step: the step is bound by memory bandwidth, which a few cores use up.
const MEAN_STEP_THREADS = Math.max(1, Math.min(availableParallelism(), 4));

export function nativeAdamKernelConfigs(native: NativeKernels): tf.KernelConfig[] {
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
  const meanKernelFunc = (args: KernelArgs): tf.TensorInfo[] => {
    const backend = args.backend as BackendWasm;
    const { w, m, v } = args.inputs as Record<'w' | 'm' | 'v', tf.TensorInfo>;
    const { rate, beta1, beta2, epsilon, correction1, correction2, divisor } = args.attrs as Record<string, number>;
    const parts = (args.attrs as unknown as { parts: readonly Float32Array[] }).parts;
    const outputs = [w, m, v].map((t) => backend.makeOutput(t.shape, 'float32'));
    const view = (t: tf.TensorInfo): Float32Array => heapFloats(backend, t);
    native.adamStepMean(
      view(w),
      view(m),
      view(v),
      parts,
      divisor,
      view(outputs[0]),
      view(outputs[1]),
      view(outputs[2]),
      rate,
      beta1,
      beta2,
      epsilon,
      correction1,
      correction2,
      MEAN_STEP_THREADS,
    );
    return outputs;
  };
  return [
    { kernelName: ADAM_STEP, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc },
    { kernelName: ADAM_MEAN_STEP, backendName: 'wasm', kernelFunc: meanKernelFunc as unknown as tf.KernelFunc },
  ];
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
    const attrs = this.nextStepAttributes();
    tf.tidy(() => {
      for (const [name, g] of Object.entries(gradients)) {
        this.update(name, (w, m, v) => tf.engine().runKernel(ADAM_STEP, { w, m, v, g }, attrs) as tf.Tensor[]);
      }
    });
  }

  applyMeanGradients(parts: Map<string, readonly Float32Array[]>, divisor: number): void {
    const attrs = this.nextStepAttributes();
    tf.tidy(() => {
      for (const [name, values] of parts) {
        // The parts ride in the attributes because they are not tensors of the backend.
        const meanAttrs = { ...attrs, divisor, parts: values } as unknown as tf.NamedAttrMap;
        this.update(name, (w, m, v) => tf.engine().runKernel(ADAM_MEAN_STEP, { w, m, v }, meanAttrs) as tf.Tensor[]);
      }
    });
  }

  private nextStepAttributes(): Record<string, number> {
    this.step += 1;
    return {
      rate: this.rate,
      beta1: this.beta1,
      beta2: this.beta2,
      epsilon: this.epsilon,
      correction1: 1 - this.beta1 ** this.step,
      correction2: 1 - this.beta2 ** this.step,
    };
  }

  /** Runs one step of variable `name` and its moments, which the first step creates as zeros. */
  private update(name: string, step: (w: tf.Variable, m: tf.Variable, v: tf.Variable) => tf.Tensor[]): void {
    const variable = tf.engine().registeredVariables[name];
    if (variable === undefined) {
      throw new Error(`Adam: no variable named '${name}' for its gradient`);
    }
    let state = this.moments.get(name);
    if (state === undefined) {
      state = { m: tf.variable(tf.zerosLike(variable), false), v: tf.variable(tf.zerosLike(variable), false) };
      this.moments.set(name, state);
    }
    const [w, m, v] = step(variable, state.m, state.v);
    variable.assign(w);
    state.m.assign(m);
    state.v.assign(v);
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
