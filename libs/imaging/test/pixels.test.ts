import { describe, expect, it } from 'vitest';
import { decodeHounsfield } from '../src/dicom/pixels';
import { sliceHeader } from './helpers/slice-header';

// The pixel tests below default to a 1x2 slice.
const header = (overrides: Parameters<typeof sliceHeader>[0]) => sliceHeader({ columns: 2, ...overrides });

describe('decodeHounsfield', () => {
  describe('when BitsStored is 12 of 16', () => {
    it('masks unsigned high bits', () => {
      // 0xF123 keeps its low 12 bits, 0x123 = 291; 291 - 1024 = -733.
      const bytes = new Uint8Array([0x23, 0xf1, 0xff, 0x0f]);
      const hu = decodeHounsfield(header({ bitsStored: 12, rescaleIntercept: -1024 }), bytes, true);
      expect(hu[0]).toBe(-733);
      expect(hu[1]).toBe(4095 - 1024);
    });

    it('sign-extends signed values', () => {
      // 0x0800 is the 12-bit sign bit: -2048; 0xFFFF masked to 0xFFF is -1.
      const bytes = new Uint8Array([0x00, 0x08, 0xff, 0xff]);
      const hu = decodeHounsfield(header({ bitsStored: 12, pixelRepresentation: 1, rescaleSlope: 2, rescaleIntercept: 10 }), bytes, true);
      expect(hu[0]).toBe(-2048 * 2 + 10);
      expect(hu[1]).toBe(-1 * 2 + 10);
    });
  });

  describe('when the byte order is big endian', () => {
    it('swaps bytes', () => {
      const bytes = new Uint8Array([0x01, 0x02, 0x80, 0x00]);
      const hu = decodeHounsfield(header({ pixelRepresentation: 1 }), bytes, false);
      expect(hu[0]).toBe(0x0102);
      expect(hu[1]).toBe(-32768);
    });
  });

  describe('when BitsAllocated is 8', () => {
    it('reads signed bytes', () => {
      const bytes = new Uint8Array([0x7f, 0x80]);
      const hu = decodeHounsfield(header({ bitsAllocated: 8, bitsStored: 8, pixelRepresentation: 1, rescaleSlope: 10, rescaleIntercept: -1000 }), bytes, true);
      expect(hu[0]).toBe(127 * 10 - 1000);
      expect(hu[1]).toBe(-128 * 10 - 1000);
    });
  });

  describe('when all 16 bits are stored', () => {
    it('rescales signed values', () => {
      // 0xFC18 is -1000 as int16; -1000 * 1.5 - 24 = -1524. 0x7FFF is 32767; 32767 * 1.5 - 24 = 49126.5.
      const bytes = new Uint8Array([0x18, 0xfc, 0xff, 0x7f]);
      const hu = decodeHounsfield(header({ pixelRepresentation: 1, rescaleSlope: 1.5, rescaleIntercept: -24 }), bytes, true);
      expect(Array.from(hu)).toEqual([-1524, 49126.5]);
    });

    it('rescales unsigned values', () => {
      const bytes = new Uint8Array([0x18, 0xfc, 0x00, 0x04]);
      const hu = decodeHounsfield(header({ rescaleIntercept: -1024 }), bytes, true);
      expect(Array.from(hu)).toEqual([0xfc18 - 1024, 0]);
    });

    it('reads pixel data at an odd byte offset', () => {
      const file = new Uint8Array([0xaa, 0x18, 0xfc, 0xff, 0x7f]);
      const hu = decodeHounsfield(header({ pixelRepresentation: 1 }), file.subarray(1), true);
      expect(Array.from(hu)).toEqual([-1000, 32767]);
    });

    it('writes into a given target', () => {
      const target = new Float32Array(4).fill(7);
      const hu = decodeHounsfield(header({ pixelRepresentation: 1 }), new Uint8Array([0x18, 0xfc, 0x01, 0x00]), true, target.subarray(1, 3));
      expect(Array.from(target)).toEqual([7, -1000, 1, 7]);
      expect(hu.buffer).toBe(target.buffer);
    });
  });

  describe('when PixelData is short', () => {
    it('names the file and tag', () => {
      expect(() => decodeHounsfield(header({}), new Uint8Array(3), true)).toThrow('/archive/slice.dcm: PixelData (7FE0,0010): PixelData has 3 bytes, expected 4 for 1x2 at 16 bits');
    });
  });
});
