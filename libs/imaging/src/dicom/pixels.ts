import type { CtSliceHeader } from './ct-header';
import { DicomReadError, tagLabel } from './errors';
import { rescale16Simd } from './simd/rescale16';

/** HU given to padding pixels (PixelPaddingValue), which lie outside the reconstructed field of view: air. */
export const PADDING_HU = -1024;

/** Number of bytes one frame of uncompressed pixel data occupies. */
export function expectedPixelBytes(header: CtSliceHeader): number {
  return header.rows * header.columns * (header.bitsAllocated / 8);
}

/**
 * Converts stored pixel values of one frame to Hounsfield units (value * RescaleSlope +
 * RescaleIntercept), keeping only the BitsStored low bits and sign-extending them when
 * PixelRepresentation is 1. Pixels equal to PixelPaddingValue, or between it and
 * PixelPaddingRangeLimit, become PADDING_HU.
 * @param pixelBytes the frame's bytes in the given byte order.
 * @param target where to write the Rows x Columns values (default: a new array), e.g. a
 *   slice of a volume, so that no per-slice copy is needed.
 * @throws DicomReadError when the bytes are fewer than Rows x Columns x BitsAllocated / 8.
 */
export function decodeHounsfield(header: CtSliceHeader, pixelBytes: Uint8Array, littleEndian: boolean, target?: Float32Array): Float32Array {
  const count = header.rows * header.columns;
  const needed = expectedPixelBytes(header);
  if (pixelBytes.byteLength < needed) {
    throw new DicomReadError('truncated-pixel-data', header.path, tagLabel('PixelData'), `PixelData has ${pixelBytes.byteLength} bytes, expected ${needed} for ${header.rows}x${header.columns} at ${header.bitsAllocated} bits`);
  }
  if (target !== undefined && target.length < count) throw new RangeError(`target has ${target.length} values, expected at least ${count}`);
  const hu = target ?? new Float32Array(count);
  const slope = header.rescaleSlope;
  const intercept = header.rescaleIntercept;
  const padded = header.pixelPaddingValue !== undefined;
  const limit = header.pixelPaddingRangeLimit ?? header.pixelPaddingValue ?? 0;
  const low = Math.min(header.pixelPaddingValue ?? 0, limit);
  const high = Math.max(header.pixelPaddingValue ?? 0, limit);

  // 16-bit frames, nearly all CT, go through the WebAssembly SIMD kernel when its float32
  // arithmetic is exact. The kernel copies the bytes in, so their alignment does not matter.
  if (header.bitsAllocated === 16) {
    const samples = littleEndian ? pixelBytes : swapToLittleEndian16(pixelBytes, count, littleEndian);
    const parameters = {
      bitsStored: header.bitsStored,
      signed: header.pixelRepresentation === 1,
      slope,
      intercept,
      padding: padded ? { low, high, value: PADDING_HU } : undefined,
    };
    if (rescale16Simd(samples, count, parameters, hu)) return hu;
  }

  // The common CT layouts (16 bits stored in 16, no padding) are read through an Int16Array or
  // Uint16Array view of the file's bytes: one multiply-add per pixel, no masking, no copy.
  // NOTE: typed-array views use the host's byte order, so this assumes a little-endian host.
  if (!padded && header.bitsAllocated === 16 && header.bitsStored === 16) {
    const aligned = littleEndian && pixelBytes.byteOffset % 2 === 0;
    const words = aligned ? pixelBytes : swapToLittleEndian16(pixelBytes, count, littleEndian);
    if (header.pixelRepresentation === 1) rescaleInt16(new Int16Array(words.buffer, words.byteOffset, count), slope, intercept, hu);
    else rescaleUint16(new Uint16Array(words.buffer, words.byteOffset, count), slope, intercept, hu);
    return hu;
  }

  const raw = rawWords(header, pixelBytes, littleEndian, count);
  const mask = header.bitsStored >= 32 ? 0xffffffff : (1 << header.bitsStored) - 1;
  // XOR then subtract sign-extends a BitsStored-wide value; with signBit 0 it leaves the value unchanged.
  // Bits above BitsStored may carry overlays or junk, so they are cleared before the sign test.
  const signBit = header.pixelRepresentation === 1 ? 1 << (header.bitsStored - 1) : 0;
  if (!padded) {
    if (raw instanceof Uint16Array) rescaleMasked16(raw, mask, signBit, slope, intercept, hu);
    else rescaleMasked8(raw, mask, signBit, slope, intercept, hu);
    return hu;
  }
  for (let i = 0; i < count; i++) {
    const value = ((raw[i] & mask) ^ signBit) - signBit;
    hu[i] = value >= low && value <= high ? PADDING_HU : value * slope + intercept;
  }
  return hu;
}

// One loop per typed-array type keeps each loop monomorphic, which is what makes it fast.
function rescaleInt16(values: Int16Array, slope: number, intercept: number, hu: Float32Array): void {
  const count = values.length;
  for (let i = 0; i < count; i++) hu[i] = values[i] * slope + intercept;
}

function rescaleUint16(values: Uint16Array, slope: number, intercept: number, hu: Float32Array): void {
  const count = values.length;
  for (let i = 0; i < count; i++) hu[i] = values[i] * slope + intercept;
}

function rescaleMasked16(values: Uint16Array, mask: number, signBit: number, slope: number, intercept: number, hu: Float32Array): void {
  const count = values.length;
  for (let i = 0; i < count; i++) hu[i] = (((values[i] & mask) ^ signBit) - signBit) * slope + intercept;
}

function rescaleMasked8(values: Uint8Array, mask: number, signBit: number, slope: number, intercept: number, hu: Float32Array): void {
  const count = values.length;
  for (let i = 0; i < count; i++) hu[i] = (((values[i] & mask) ^ signBit) - signBit) * slope + intercept;
}

// Copies 16-bit samples into a new, aligned buffer in little-endian order (big endian
// transfer syntax, or pixel data at an odd byte offset).
function swapToLittleEndian16(bytes: Uint8Array, count: number, littleEndian: boolean): Uint8Array {
  const out = new Uint8Array(count * 2);
  if (littleEndian) {
    out.set(bytes.subarray(0, count * 2));
    return out;
  }
  for (let i = 0; i < count * 2; i += 2) {
    out[i] = bytes[i + 1];
    out[i + 1] = bytes[i];
  }
  return out;
}

// Returns the samples as unsigned words of BitsAllocated width, viewing the bytes in place when the layout allows.
function rawWords(header: CtSliceHeader, bytes: Uint8Array, littleEndian: boolean, count: number): Uint8Array | Uint16Array {
  if (header.bitsAllocated === 8) return bytes.subarray(0, count);
  const words = littleEndian && bytes.byteOffset % 2 === 0 ? bytes : swapToLittleEndian16(bytes, count, littleEndian);
  return new Uint16Array(words.buffer, words.byteOffset, count);
}
