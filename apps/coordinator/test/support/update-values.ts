/**
 * Returns deterministic update values in [-8, 8) with some negative zeros and subnormal
 * values, the cases where a fold that rounds differently would show.
 */
export function updateValues(length: number, seed: number): Float32Array {
  const data = new Float32Array(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    data[i] = (x / 2 ** 32 - 0.5) * 16;
    if (i % 89 === 0) data[i] = 1e-40;
    if (i % 97 === 0) data[i] = -0;
  }
  return data;
}
