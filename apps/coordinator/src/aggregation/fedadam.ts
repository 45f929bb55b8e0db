import type { NamedTensor } from '@covnet/protocol';
import type { ModelLayout } from './fedavg';

export interface FedAdamOptions {
  serverLearningRate: number;
  beta1: number;
  beta2: number;
  /** Constant added to the square root of the second moment; it bounds the step where the moment is near 0. */
  tau: number;
}

// Batch-normalisation moving statistics are not trained by gradient descent,
// so an adaptive step would make them drift from any site's data. They take
// the FedAvg mean unchanged.
const TAKES_THE_MEAN = /moving_(mean|variance)$/;

/**
 * FedAdam's server optimizer (Reddi et al., "Adaptive Federated
 * Optimization", ICLR 2021, Algorithm 2): the FedAvg mean minus the global
 * model is a pseudo-gradient Δ; then m = β1 m + (1-β1) Δ,
 * v = β2 v + (1-β2) Δ², and the new model is x + η m / (√v + τ).
 * As in that paper, there is no bias correction.
 */
export class FedAdam {
  private readonly m: Float64Array[];
  private readonly v: Float64Array[];

  constructor(
    private readonly layout: ModelLayout,
    private readonly options: FedAdamOptions,
  ) {
    this.m = layout.map((t) => new Float64Array(t.shape.reduce((a, b) => a * b, 1)));
    this.v = layout.map((t) => new Float64Array(t.shape.reduce((a, b) => a * b, 1)));
  }

  /**
   * Returns the next global model from the current one and the round's FedAvg
   * mean, both in layout order, and updates the moments.
   * @throws Error when a tensor is missing from either list.
   */
  step(current: readonly NamedTensor[], mean: readonly NamedTensor[]): NamedTensor[] {
    const currentByName = new Map(current.map((t) => [t.name, t.data]));
    const meanByName = new Map(mean.map((t) => [t.name, t.data]));
    const { serverLearningRate: eta, beta1, beta2, tau } = this.options;
    return this.layout.map((entry, k) => {
      const x = currentByName.get(entry.name);
      const average = meanByName.get(entry.name);
      if (!x || !average) throw new Error(`FedAdam: tensor ${entry.name} is missing from the global model or the mean`);
      if (TAKES_THE_MEAN.test(entry.name)) return { name: entry.name, shape: [...entry.shape], data: Float32Array.from(average) };
      const m = this.m[k];
      const v = this.v[k];
      const next = new Float32Array(x.length);
      for (let i = 0; i < x.length; i++) {
        const delta = average[i] - x[i];
        m[i] = beta1 * m[i] + (1 - beta1) * delta;
        v[i] = beta2 * v[i] + (1 - beta2) * delta * delta;
        next[i] = x[i] + (eta * m[i]) / (Math.sqrt(v[i]) + tau);
      }
      return { name: entry.name, shape: [...entry.shape], data: next };
    });
  }
}
