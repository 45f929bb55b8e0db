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
  const raw = rawWords(header, pixelBytes, littleEndian, count);
  const mask = header.bitsStored >= 32 ? 0xffffffff : (1 << header.bitsStored) - 1;
  // XOR then subtract sign-extends a BitsStored-wide value; with signBit 0 it leaves the value unchanged.
  const signBit = header.pixelRepresentation === 1 ? 1 << (header.bitsStored - 1) : 0;
  const slope = header.rescaleSlope;
  const intercept = header.rescaleIntercept;
  const hu = new Float32Array(count);
  const padded = header.pixelPaddingValue !== undefined;
  const limit = header.pixelPaddingRangeLimit ?? header.pixelPaddingValue ?? 0;
  const low = Math.min(header.pixelPaddingValue ?? 0, limit);
  const high = Math.max(header.pixelPaddingValue ?? 0, limit);
  // One loop over one typed-array type keeps the loop monomorphic, which is what makes it fast.
  // Bits above BitsStored may carry overlays or junk, so they are cleared before the sign test.
  if (padded) {
    for (let i = 0; i < count; i++) {
      const value = ((raw[i] & mask) ^ signBit) - signBit;
      hu[i] = value >= low && value <= high ? PADDING_HU : value * slope + intercept;
    }
  } else {
    for (let i = 0; i < count; i++) hu[i] = (((raw[i] & mask) ^ signBit) - signBit) * slope + intercept;
  }
  return hu;
}

// Returns the samples as unsigned words of BitsAllocated width, viewing the bytes in place when the layout allows.
function rawWords(header: CtSliceHeader, bytes: Uint8Array, littleEndian: boolean, count: number): Uint8Array | Uint16Array {
  if (header.bitsAllocated === 8) return bytes.subarray(0, count);
  if (littleEndian && bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, count);
  const words = new Uint16Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, count * 2);
  for (let i = 0; i < count; i++) words[i] = view.getUint16(i * 2, littleEndian);
  return words;
}
