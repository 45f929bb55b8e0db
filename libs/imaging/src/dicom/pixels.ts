import type { CtSliceHeader } from './ct-header';
import { DicomReadError, tagLabel } from './errors';

/** Number of bytes the PixelData of one uncompressed single-frame slice must contain. */
export function expectedPixelBytes(header: CtSliceHeader): number {
  return header.rows * header.columns * (header.bitsAllocated / 8);
}

/**
 * Converts stored pixel values of one slice to Hounsfield units (value * RescaleSlope +
 * RescaleIntercept), keeping only the BitsStored low bits and sign-extending them when
 * PixelRepresentation is 1.
 * @param pixelBytes the PixelData bytes in the file's byte order.
 * @throws DicomReadError when PixelData is shorter than Rows x Columns x BitsAllocated / 8.
 */
export function decodeHounsfield(header: CtSliceHeader, pixelBytes: Uint8Array, littleEndian: boolean): Float32Array {
  const count = header.rows * header.columns;
  const needed = expectedPixelBytes(header);
  if (pixelBytes.byteLength < needed) {
    throw new DicomReadError('truncated-pixel-data', header.path, tagLabel('PixelData'), `PixelData has ${pixelBytes.byteLength} bytes, expected ${needed} for ${header.rows}x${header.columns} at ${header.bitsAllocated} bits`);
  }

  const mask = header.bitsStored === 32 ? 0xffffffff : (1 << header.bitsStored) - 1;
  const signBit = 1 << (header.bitsStored - 1);
  const range = 1 << header.bitsStored;
  const signed = header.pixelRepresentation === 1;
  const slope = header.rescaleSlope;
  const intercept = header.rescaleIntercept;
  const view = new DataView(pixelBytes.buffer, pixelBytes.byteOffset, needed);
  const hu = new Float32Array(count);

  for (let i = 0; i < count; i++) {
    let value = header.bitsAllocated === 16 ? view.getUint16(i * 2, littleEndian) : view.getUint8(i);
    // Bits above BitsStored may carry overlays or junk, so they are cleared before the sign test.
    value &= mask;
    if (signed && (value & signBit) !== 0) value -= range;
    hu[i] = value * slope + intercept;
  }
  return hu;
}

/**
 * Checks in the raw file bytes that the PixelData element is as long as it declares.
 * dcmjs 0.49 pads a truncated PixelData value with zeros instead of failing. So this check
 * looks for the element header itself: tag (7FE0,0010) followed by an explicit VR OB/OW
 * header or an implicit 4-byte length, where the length equals the expected pixel byte count.
 * Files whose dataset is deflated are not checked because their raw bytes are compressed.
 * @throws DicomReadError when the declared PixelData extends past the end of the file.
 */
export function checkPixelDataComplete(file: Uint8Array, header: CtSliceHeader, littleEndian: boolean): void {
  const expected = expectedPixelBytes(header);
  const evenExpected = expected + (expected % 2);
  const tag = littleEndian ? [0xe0, 0x7f, 0x10, 0x00] : [0x7f, 0xe0, 0x00, 0x10];
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);

  let found: { valueStart: number; length: number } | undefined;
  for (let offset = file.indexOf(tag[0]); offset >= 0 && offset + 12 <= file.byteLength; offset = file.indexOf(tag[0], offset + 1)) {
    if (file[offset + 1] !== tag[1] || file[offset + 2] !== tag[2] || file[offset + 3] !== tag[3]) continue;

    const vr = String.fromCharCode(file[offset + 4], file[offset + 5]);
    let length: number;
    let valueStart: number;
    if ((vr === 'OW' || vr === 'OB') && file[offset + 6] === 0 && file[offset + 7] === 0) {
      length = view.getUint32(offset + 8, littleEndian);
      valueStart = offset + 12;
    } else {
      length = view.getUint32(offset + 4, littleEndian);
      valueStart = offset + 8;
    }
    if (length === expected || length === evenExpected) found = { valueStart, length };
  }

  if (found !== undefined && found.valueStart + found.length > file.byteLength) {
    const present = file.byteLength - found.valueStart;
    throw new DicomReadError('truncated-pixel-data', header.path, tagLabel('PixelData'), `PixelData declares ${found.length} bytes but the file ends after ${present}; the file is truncated`);
  }
}
