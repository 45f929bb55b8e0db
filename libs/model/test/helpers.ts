import type { ClassLabel, ExamInput, LabelledExam } from '../src';

/** Deterministic pseudo-random values in [0, 1) (a linear congruential generator). */
export function pseudoRandomValues(n: number, seed: number): Float32Array {
  const values = new Float32Array(n);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    values[i] = state / 4_294_967_296;
  }
  return values;
}

/**
 * An exam of noise plus a class pattern: horizontal stripes (covid19), vertical stripes
 * (cap) or none (non_pneumonia). The classes differ in texture, not in mean brightness,
 * because BN in training mode normalises each exam by its own slice statistics.
 */
export function syntheticExam(label: ClassLabel, slices: number, size: number, seed: number): LabelledExam {
  const noise = pseudoRandomValues(slices * size * size, seed);
  const data = new Float32Array(noise.length);
  for (let i = 0; i < noise.length; i++) {
    const row = Math.floor(i / size) % size;
    const col = i % size;
    const stripe = label === 0 ? row % 4 < 2 : label === 1 ? col % 4 < 2 : false;
    data[i] = 0.35 + 0.3 * noise[i] + (stripe ? 0.3 : 0);
  }
  return { input: { slices, size, data }, label };
}

export function randomExam(slices: number, size: number, seed: number): ExamInput {
  return { slices, size, data: pseudoRandomValues(slices * size * size, seed) };
}

export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    max = Math.max(max, Math.abs(a[i] - b[i]));
  }
  return max;
}

export function maxAbs(a: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    max = Math.max(max, Math.abs(a[i]));
  }
  return max;
}
