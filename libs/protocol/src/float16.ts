// IEEE 754 half precision conversion. Node 20 has no Float16Array, so the
// codec converts through these two functions.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Converts a float32 value to float16 bits, rounding to nearest even; overflow gives infinity. */
export function toFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;

  if (exponent === 0xff) {
    // NaN keeps a mantissa bit so it stays NaN; infinity keeps none.
    return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);
  }
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - halfExponent;
    const rounded = mantissa >>> shift;
    const remainder = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    const up = remainder > halfway || (remainder === halfway && (rounded & 1) === 1);
    return sign | (rounded + (up ? 1 : 0));
  }
  const rounded = (halfExponent << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  const up = remainder > 0x1000 || (remainder === 0x1000 && (rounded & 1) === 1);
  // A carry out of the mantissa correctly bumps the exponent, up to infinity.
  return sign | (rounded + (up ? 1 : 0));
}

/** Converts float16 bits to a number. */
export function fromFloat16Bits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

let table: Float32Array | null = null;

/**
 * Returns the float32 value of each of the 65,536 float16 bit patterns, built once.
 * Decoding through it is one lookup per value. Calling fromFloat16Bits per value took about
 * 3 s for one ResNet-50 update on the coordinator.
 */
export function float16Table(): Float32Array {
  if (table === null) {
    table = new Float32Array(65_536);
    for (let bits = 0; bits < 65_536; bits++) table[bits] = fromFloat16Bits(bits);
  }
  return table;
}
