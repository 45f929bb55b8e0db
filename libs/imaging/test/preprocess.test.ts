import { describe, expect, it } from 'vitest';
import { computeLungMask, preprocessImage2D, preprocessVolume, selectSlices, synthesizeExam, type Volume } from '../src';

function constantVolume(value: number, slices = 3, rows = 8, columns = 8): Volume {
  return { hu: new Float32Array(slices * rows * columns).fill(value), slices, rows, columns, pixelSpacing: [1, 1], sliceSpacing: 5 };
}

describe('selectSlices', () => {
  it('spreads slices evenly', () => {
    // round(i * 19 / 4) for i = 0..4: 0, 4.75, 9.5, 14.25, 19.
    expect(selectSlices(20, 5)).toEqual([0, 5, 10, 14, 19]);
  });

  it('keeps all slices when there are few', () => {
    expect(selectSlices(4, 10)).toEqual([0, 1, 2, 3]);
  });

  it('takes the middle slice for one', () => {
    expect(selectSlices(9, 1)).toEqual([4]);
  });
});

describe('preprocessVolume', () => {
  describe('when the volume is uniform', () => {
    it.each([
      // Lung window: level -600, width 1500, so [-1350, 150] maps to [0, 1].
      [-600, 0.5],
      [-1350, 0],
      [-2000, 0],
      [150, 1],
      [1000, 1],
      [-975, 0.25],
    ])('maps %d HU to %d', (hu, expected) => {
      const input = preprocessVolume(constantVolume(hu), { size: 4 });
      expect(input.slices).toBe(3);
      expect(input.data.length).toBe(3 * 4 * 4);
      for (const value of input.data) expect(value).toBeCloseTo(expected, 6);
    });
  });

  describe('when given a synthetic exam', () => {
    const exam = synthesizeExam({ seed: 5, label: 'cap', slices: 20 });
    const volume: Volume = { hu: exam.hu, slices: exam.slices, rows: exam.rows, columns: exam.columns, pixelSpacing: exam.pixelSpacing, sliceSpacing: exam.sliceSpacing };
    const input = preprocessVolume(volume, { size: 96, maxSlices: 8 });

    it('has the requested shape', () => {
      expect(input.slices).toBe(8);
      expect(input.size).toBe(96);
      expect(input.data.length).toBe(8 * 96 * 96);
      expect(input.sliceIndices).toEqual(selectSlices(20, 8));
    });

    it('stays within [0, 1]', () => {
      let min = Infinity;
      let max = -Infinity;
      for (const value of input.data) {
        min = Math.min(min, value);
        max = Math.max(max, value);
      }
      expect(min).toBeGreaterThanOrEqual(0);
      expect(max).toBeLessThanOrEqual(1);
      expect(max - min).toBeGreaterThan(0.5);
    });

    it('crops around both lungs', () => {
      expect(input.cropSource).toBe('lungs');
      const crop = input.crop!;
      let minRow = Infinity;
      let maxRow = -Infinity;
      let minCol = Infinity;
      let maxCol = -Infinity;
      for (let i = 0; i < exam.lungMask.length; i++) {
        if (exam.lungMask[i] === 0) continue;
        const inSlice = i % (exam.rows * exam.columns);
        const row = Math.floor(inSlice / exam.columns);
        const col = inSlice % exam.columns;
        minRow = Math.min(minRow, row);
        maxRow = Math.max(maxRow, row);
        minCol = Math.min(minCol, col);
        maxCol = Math.max(maxCol, col);
      }
      expect(crop.row0).toBeLessThanOrEqual(minRow);
      expect(crop.col0).toBeLessThanOrEqual(minCol);
      expect(crop.row0 + crop.height).toBeGreaterThanOrEqual(maxRow + 1);
      expect(crop.col0 + crop.width).toBeGreaterThanOrEqual(maxCol + 1);
      // The crop is tighter than the whole slice.
      expect(crop.width).toBeLessThan(exam.columns);
    });

    it('finds two lungs', () => {
      expect(computeLungMask(volume).lungs).toBe(2);
    });
  });

  describe('when no lungs are present', () => {
    it('falls back to the body box', () => {
      const volume = constantVolume(-1000, 2, 16, 16);
      for (let k = 0; k < 2; k++) {
        for (let row = 4; row < 8; row++) for (let col = 6; col < 10; col++) volume.hu[(k * 16 + row) * 16 + col] = 40;
      }
      const input = preprocessVolume(volume, { size: 8, marginFraction: 0 });
      expect(input.cropSource).toBe('body');
      expect(input.crop).toEqual({ row0: 4, col0: 6, height: 4, width: 4 });
    });
  });

  it('rejects a size of 0', () => {
    expect(() => preprocessVolume(constantVolume(0), { size: 0 })).toThrow(/size must be a positive integer/);
  });
});

describe('preprocessImage2D', () => {
  it('scales to [0, 1] at the same size', () => {
    const input = preprocessImage2D(new Uint8Array([0, 255, 51, 102]), 2, 2, 2);
    const expected = [0, 1, 0.2, 0.4];
    expected.forEach((value, index) => expect(input.data[index]).toBeCloseTo(value, 6));
    expect(input.slices).toBe(1);
  });

  it('interpolates bilinearly when enlarging', () => {
    // Output pixel centres of a 2 -> 4 enlargement fall at source x = -0.25, 0.25, 0.75, 1.25,
    // clamped to [0, 1], so a 0..255 ramp becomes 0, 0.25, 0.75, 1.
    const input = preprocessImage2D(new Float32Array([0, 255, 0, 255]), 2, 2, 4);
    const firstRow = Array.from(input.data.subarray(0, 4));
    expect(firstRow[0]).toBeCloseTo(0, 6);
    expect(firstRow[1]).toBeCloseTo(0.25, 6);
    expect(firstRow[2]).toBeCloseTo(0.75, 6);
    expect(firstRow[3]).toBeCloseTo(1, 6);
  });

  it('rejects a pixel count that does not match', () => {
    expect(() => preprocessImage2D(new Uint8Array(5), 2, 2, 4)).toThrow(/5 pixels, expected 2x2/);
  });
});
