import * as tf from '@tensorflow/tfjs';

/** One model tensor by its stable name, e.g. `stage2_block1_bn1/moving_mean`. */
export interface NamedWeight {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** Copies every model weight, trainable or not (BN moving statistics included). */
export function readNamedWeights(model: tf.LayersModel): NamedWeight[] {
  return model.weights.map((w) => {
    const value = w.read();
    // dataSync may return the backend's own buffer (cpu backend), so copy it.
    return { name: w.originalName, shape: [...value.shape], data: new Float32Array(value.dataSync()) };
  });
}

function describeShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Writes weights matched by name and shape, never by position. Every check runs before
 * the first write, so a rejected set leaves the model unchanged.
 * @throws Error on a missing, unexpected, duplicated or wrong-shaped tensor, or on NaN/Infinity.
 */
export function writeNamedWeights(model: tf.LayersModel, weights: NamedWeight[]): void {
  const targets = new Map(model.weights.map((w) => [w.originalName, w]));
  const seen = new Set<string>();

  for (const weight of weights) {
    const target = targets.get(weight.name);
    if (target === undefined) {
      throw new Error(`Unexpected weight '${weight.name}' with shape ${describeShape(weight.shape)}: the model has no tensor of that name.`);
    }
    if (seen.has(weight.name)) {
      throw new Error(`Weight '${weight.name}' appears more than once.`);
    }
    seen.add(weight.name);
    const expected = target.read().shape;
    if (weight.shape.length !== expected.length || weight.shape.some((d, i) => d !== expected[i])) {
      throw new Error(`Weight '${weight.name}' has shape ${describeShape(weight.shape)}, expected ${describeShape(expected)}.`);
    }
    const size = expected.reduce((a, b) => a * b, 1);
    if (weight.data.length !== size) {
      throw new Error(`Weight '${weight.name}' has ${weight.data.length} values, expected ${size} for shape ${describeShape(expected)}.`);
    }
    const bad = weight.data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new Error(`Weight '${weight.name}' contains a non-finite value (${weight.data[bad]}) at index ${bad}.`);
    }
  }

  const missing = [...targets.values()].filter((w) => !seen.has(w.originalName));
  if (missing.length > 0) {
    const list = missing
      .slice(0, 5)
      .map((w) => `'${w.originalName}' ${describeShape(w.read().shape)}`)
      .join(', ');
    const more = missing.length > 5 ? ` and ${missing.length - 5} more` : '';
    throw new Error(`Missing ${missing.length} weight(s): ${list}${more}.`);
  }

  for (const weight of weights) {
    const target = targets.get(weight.name)!;
    const value = tf.tensor(weight.data, weight.shape, 'float32');
    try {
      target.write(value);
    } finally {
      // write() makes the variable share the buffer and raises its reference count.
      value.dispose();
    }
  }
}
