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

// State file: the magic bytes, a uint32 LE length, a JSON header listing each
// tensor's name and value count in layout order, then per tensor m and v as
// float64 LE. float64 keeps the moments bit for bit across a restart.
const STATE_MAGIC = Buffer.from('CVFADAM1', 'latin1');

/** A FedAdam state file that does not fit the experiment's model layout. */
export class FedAdamStateError extends Error {
  override name = 'FedAdamStateError';
}

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
   * Returns a FedAdam whose moments are those of `state`, as `serialize` wrote them.
   * @param source names the state in errors, e.g. its file.
   * @throws FedAdamStateError when the state is truncated or its tensors differ from `layout`.
   */
  static restore(layout: ModelLayout, options: FedAdamOptions, state: Uint8Array, source: string): FedAdam {
    const adam = new FedAdam(layout, options);
    const bytes = Buffer.from(state.buffer, state.byteOffset, state.byteLength);
    if (bytes.byteLength < STATE_MAGIC.byteLength + 4 || !bytes.subarray(0, STATE_MAGIC.byteLength).equals(STATE_MAGIC)) {
      throw new FedAdamStateError(`${source} is not a FedAdam state file: its first bytes are not ${STATE_MAGIC.toString('latin1')}`);
    }
    const headerLength = bytes.readUInt32LE(STATE_MAGIC.byteLength);
    const headerStart = STATE_MAGIC.byteLength + 4;
    let header: { tensors: { name: string; length: number }[] };
    try {
      header = JSON.parse(bytes.subarray(headerStart, headerStart + headerLength).toString('utf8'));
    } catch (error) {
      throw new FedAdamStateError(`${source}: header is not valid JSON: ${(error as Error).message}`);
    }
    const tensors = Array.isArray(header.tensors) ? header.tensors : [];
    const expected = layout.map((t, k) => ({ name: t.name, length: adam.m[k].length }));
    if (JSON.stringify(tensors) !== JSON.stringify(expected)) {
      throw new FedAdamStateError(`${source}: its tensors do not match the model layout of the experiment, so it belongs to another model`);
    }
    let offset = headerStart + headerLength;
    const valueBytes = expected.reduce((sum, t) => sum + t.length * 16, 0);
    if (bytes.byteLength !== offset + valueBytes) {
      throw new FedAdamStateError(`${source} has ${bytes.byteLength} bytes, expected ${offset + valueBytes}`);
    }
    for (let k = 0; k < expected.length; k++) {
      for (const moments of [adam.m[k], adam.v[k]]) {
        for (let i = 0; i < moments.length; i++, offset += 8) moments[i] = bytes.readDoubleLE(offset);
      }
    }
    return adam;
  }

  /** Encodes the moments, so that a restarted coordinator continues with exactly these values. */
  serialize(): Buffer {
    const header = Buffer.from(JSON.stringify({ tensors: this.layout.map((t, k) => ({ name: t.name, length: this.m[k].length })) }), 'utf8');
    const valueBytes = this.m.reduce((sum, moments) => sum + moments.length * 16, 0);
    const out = Buffer.alloc(STATE_MAGIC.byteLength + 4 + header.byteLength + valueBytes);
    STATE_MAGIC.copy(out, 0);
    out.writeUInt32LE(header.byteLength, STATE_MAGIC.byteLength);
    header.copy(out, STATE_MAGIC.byteLength + 4);
    let offset = STATE_MAGIC.byteLength + 4 + header.byteLength;
    for (let k = 0; k < this.m.length; k++) {
      for (const moments of [this.m[k], this.v[k]]) {
        for (let i = 0; i < moments.length; i++, offset += 8) out.writeDoubleLE(moments[i], offset);
      }
    }
    return out;
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
