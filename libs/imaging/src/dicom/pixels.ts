import type { CtSliceHeader } from './ct-header';
import { DicomReadError, tagLabel } from './errors';

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
 * @throws DicomReadError when the bytes are fewer than Rows x Columns x BitsAllocated / 8.
 */
export function decodeHounsfield(header: CtSliceHeader, pixelBytes: Uint8Array, littleEndian: boolean): Float32Array {
  const count = header.rows * header.columns;
  const needed = expectedPixelBytes(header);
  if (pixelBytes.byteLength < needed) {
    throw new DicomReadError('truncated-pixel-data', header.path, tagLabel('PixelData'), `PixelData has ${pixelBytes.byteLength} bytes, expected ${needed} for ${header.rows}x${header.columns} at ${header.bitsAllocated} bits`);
  }
  const stored = storedValues(header, pixelBytes, littleEndian, count);
  const slope = header.rescaleSlope;
  const intercept = header.rescaleIntercept;
  const hu = new Float32Array(count);
  for (let i = 0; i < count; i++) hu[i] = stored[i] * slope + intercept;

  if (header.pixelPaddingValue !== undefined) {
    const limit = header.pixelPaddingRangeLimit ?? header.pixelPaddingValue;
    const low = Math.min(header.pixelPaddingValue, limit);
    const high = Math.max(header.pixelPaddingValue, limit);
    for (let i = 0; i < count; i++) {
      if (stored[i] >= low && stored[i] <= high) hu[i] = PADDING_HU;
    }
  }
  return hu;
}

// Returns the stored values as numbers, using typed-array views directly when the layout allows.
function storedValues(header: CtSliceHeader, bytes: Uint8Array, littleEndian: boolean, count: number): ArrayLike<number> {
  const signed = header.pixelRepresentation === 1;
  const full = header.bitsStored === header.bitsAllocated;
  if (header.bitsAllocated === 8) {
    if (full) return signed ? new Int8Array(bytes.buffer, bytes.byteOffset, count) : bytes.subarray(0, count);
    return maskAndExtend(bytes.subarray(0, count), header.bitsStored, signed);
  }

  let words: Uint16Array;
  if (littleEndian && bytes.byteOffset % 2 === 0) {
    words = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
  } else {
    words = new Uint16Array(count);
    const view = new DataView(bytes.buffer, bytes.byteOffset, count * 2);
    for (let i = 0; i < count; i++) words[i] = view.getUint16(i * 2, littleEndian);
  }
  if (full) return signed ? new Int16Array(words.buffer, words.byteOffset, count) : words;
  return maskAndExtend(words, header.bitsStored, signed);
}

// Bits above BitsStored may carry overlays or junk, so they are cleared before the sign test.
function maskAndExtend(raw: Uint8Array | Uint16Array, bitsStored: number, signed: boolean): Int32Array {
  const mask = (1 << bitsStored) - 1;
  const signBit = 1 << (bitsStored - 1);
  const range = 1 << bitsStored;
  const out = new Int32Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const value = raw[i] & mask;
    out[i] = signed && (value & signBit) !== 0 ? value - range : value;
  }
  return out;
}
