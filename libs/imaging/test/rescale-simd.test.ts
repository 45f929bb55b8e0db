import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeHounsfield, PADDING_HU } from '../src/dicom/pixels';
import { isExactInFloat32, rescale16Simd } from '../src/dicom/simd/rescale16';
import { sliceHeader as header } from './helpers/slice-header';

const KERNEL_DIR = join(__dirname, '..', 'src', 'dicom', 'simd');

// Every 16-bit word once, little endian, in a frame of 256 x 256.
function everyWord(): Uint8Array {
  const bytes = new Uint8Array(65536 * 2);
  for (let word = 0; word < 65536; word++) {
    bytes[2 * word] = word & 0xff;
    bytes[2 * word + 1] = word >> 8;
  }
  return bytes;
}

// PS3.3 C.7.6.3.1: keep the low BitsStored bits, two's complement when PixelRepresentation is 1.
function storedValue(word: number, bitsStored: number, signed: boolean): number {
  const value = word % 2 ** bitsStored;
  return signed && value >= 2 ** (bitsStored - 1) ? value - 2 ** bitsStored : value;
}

describe('16-bit rescale kernel', () => {
  const cases = [
    { bitsStored: 16, signed: false, slope: 1, intercept: -1024 },
    { bitsStored: 16, signed: true, slope: 1, intercept: 0 },
    { bitsStored: 12, signed: false, slope: 1, intercept: -1024 },
    { bitsStored: 12, signed: true, slope: 2, intercept: -3 },
    { bitsStored: 13, signed: true, slope: 1, intercept: -8192 },
    { bitsStored: 10, signed: false, slope: 3, intercept: 100 },
  ];

  for (const { bitsStored, signed, slope, intercept } of cases) {
    it(`matches the standard on all words, ${bitsStored} bits ${signed ? 'signed' : 'unsigned'}`, () => {
      const fields = { rows: 256, columns: 256, bitsStored, pixelRepresentation: (signed ? 1 : 0) as 0 | 1, rescaleSlope: slope, rescaleIntercept: intercept };
      const hu = decodeHounsfield(header(fields), everyWord(), true);
      let mismatches = 0;
      for (let word = 0; word < 65536; word++) {
        if (hu[word] !== storedValue(word, bitsStored, signed) * slope + intercept) mismatches += 1;
      }
      expect(mismatches).toBe(0);
    });
  }

  it('replaces the padding range with air', () => {
    // Signed 16 bits: padding from -2000 up to -1000 inclusive, given in reverse order.
    const fields = { rows: 256, columns: 256, pixelRepresentation: 1 as const, rescaleIntercept: 0, pixelPaddingValue: -1000, pixelPaddingRangeLimit: -2000 };
    const hu = decodeHounsfield(header(fields), everyWord(), true);
    let mismatches = 0;
    for (let word = 0; word < 65536; word++) {
      const value = storedValue(word, 16, true);
      const expected = value >= -2000 && value <= -1000 ? PADDING_HU : value;
      if (hu[word] !== expected) mismatches += 1;
    }
    expect(mismatches).toBe(0);
  });

  it('handles frames not a multiple of eight', () => {
    // 3 x 5 = 15 pixels: one whole vector of eight and a tail of seven.
    const words = Array.from({ length: 15 }, (_, i) => 1000 + 37 * i);
    const bytes = new Uint8Array(words.flatMap((word) => [word & 0xff, word >> 8]));
    const target = new Float32Array(16).fill(99);
    decodeHounsfield(header({ rows: 3, columns: 5, rescaleIntercept: -1024 }), bytes, true, target);
    expect(Array.from(target.subarray(0, 15))).toEqual(words.map((word) => word - 1024));
    // The value after the frame is not written.
    expect(target[15]).toBe(99);
  });

  it('reads pixel data at an odd byte offset', () => {
    const bytes = new Uint8Array(1 + 16);
    for (let i = 0; i < 8; i++) {
      bytes[1 + 2 * i] = (500 * i) & 0xff;
      bytes[2 + 2 * i] = (500 * i) >> 8;
    }
    const hu = decodeHounsfield(header({ rows: 2, columns: 4, rescaleIntercept: -1024 }), bytes.subarray(1), true);
    expect(Array.from(hu)).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((i) => 500 * i - 1024));
  });

  it('runs in WebAssembly for exact rescales', () => {
    const target = new Float32Array(8);
    const usedKernel = rescale16Simd(new Uint8Array([1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0xff, 0xff]), 8, { bitsStored: 16, signed: true, slope: 2, intercept: -1024 }, target);
    expect(usedKernel).toBe(true);
    expect(Array.from(target)).toEqual([-1022, -1020, -1018, -1016, -1014, -1012, -1010, -1026]);
  });

  it('leaves inexact rescales to the scalar path', () => {
    // A slope of 0.1 has no exact float32 product, so float32 arithmetic could differ from float64 rounded once.
    expect(isExactInFloat32({ bitsStored: 12, signed: false, slope: 0.1, intercept: 0 })).toBe(false);
    expect(isExactInFloat32({ bitsStored: 16, signed: false, slope: 512, intercept: 0 })).toBe(false);
    expect(isExactInFloat32({ bitsStored: 16, signed: true, slope: 1, intercept: -1024 })).toBe(true);
    expect(rescale16Simd(new Uint8Array(16), 8, { bitsStored: 12, signed: false, slope: 0.1, intercept: 0 }, new Float32Array(8))).toBe(false);

    // 3003 * 0.1 - 1024 in float64 and rounded once to float32.
    const hu = decodeHounsfield(header({ bitsStored: 12, rescaleSlope: 0.1, rescaleIntercept: -1024 }), new Uint8Array([0xbb, 0x0b]), true);
    expect(hu[0]).toBe(Math.fround(3003 * 0.1 - 1024));
  });
});

describe.skipIf(spawnSync('npx', ['--no-install', 'wat2wasm', '--version']).status !== 0)('rescale kernel binary', () => {
  it('is the assembly of its text source', () => {
    const work = mkdtempSync(join(tmpdir(), 'covnet-wat-'));
    try {
      const out = join(work, 'rescale16.wasm');
      const run = spawnSync('npx', ['--no-install', 'wat2wasm', join(KERNEL_DIR, 'rescale16.wat'), '-o', out], { encoding: 'utf8' });
      expect(run.stderr).toBe('');
      expect(readFileSync(out).equals(readFileSync(join(KERNEL_DIR, 'rescale16.wasm')))).toBe(true);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
