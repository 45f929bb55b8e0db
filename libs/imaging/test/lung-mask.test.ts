import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { computeLungMask, loadSeriesVolume, type LungMask, type Volume } from '../src';
import { sharedDataDir } from './shared-data';

const SLICES = 20;
const SIZE = 64;

// A hand-built chest with a soft-tissue body (40 HU) and two lungs (-850 HU) from slice 2 to 15.
// A trachea (-1000 HU, radius 4 pixels) runs from slice 12 to the top, and main bronchi in
// slices 12 and 13 join it to both lungs. Below the body lies a table (200 HU) with air inside it.
// A nodule (40 HU) sits inside the left-image lung. Pixels are 1 mm.
function buildChest(): Volume {
  const hu = new Float32Array(SLICES * SIZE * SIZE).fill(-1000);
  const set = (k: number, row: number, col: number, value: number) => {
    hu[(k * SIZE + row) * SIZE + col] = value;
  };
  const inEllipse = (row: number, col: number, centreRow: number, centreCol: number, radiusRows: number, radiusCols: number) =>
    ((row - centreRow) / radiusRows) ** 2 + ((col - centreCol) / radiusCols) ** 2 <= 1;

  for (let k = 0; k < SLICES; k++) {
    for (let row = 0; row < SIZE; row++) {
      for (let col = 0; col < SIZE; col++) {
        if (inEllipse(row, col, 30, 32, 22, 28)) set(k, row, col, 40);
        const lungSlice = k >= 2 && k <= 15;
        if (lungSlice && (inEllipse(row, col, 32, 19, 14, 9) || inEllipse(row, col, 32, 45, 14, 9))) set(k, row, col, -850);
        if (k >= 7 && k <= 9 && inEllipse(row, col, 32, 19, 2, 2)) set(k, row, col, 40);
        if (k >= 12 && inEllipse(row, col, 24, 32, 4, 4)) set(k, row, col, -1000);
        if ((k === 12 || k === 13) && row >= 23 && row <= 25 && col >= 19 && col <= 45) set(k, row, col, -1000);
        const table = row >= 56 && row <= 62 && col >= 5 && col <= 58;
        const tableAir = row >= 58 && row <= 60 && col >= 8 && col <= 55;
        if (table) set(k, row, col, tableAir ? -1000 : 200);
      }
    }
  }
  return { hu, slices: SLICES, rows: SIZE, columns: SIZE, pixelSpacing: [1, 1], sliceSpacing: 5 };
}

function maskAt(mask: LungMask, k: number, row: number, col: number): number {
  return mask.mask[(k * SIZE + row) * SIZE + col];
}

describe('computeLungMask', () => {
  describe('when the lungs join through the trachea', () => {
    let mask: LungMask;

    beforeAll(() => {
      mask = computeLungMask(buildChest());
    });

    it('finds two lungs', () => {
      expect(mask.lungs).toBe(2);
    });

    it('removes the trachea', () => {
      expect(mask.airwayVoxels).toBeGreaterThan(0);
      for (let k = 12; k < SLICES; k++) expect(maskAt(mask, k, 24, 32)).toBe(0);
    });

    it('removes air inside the table', () => {
      for (let k = 0; k < SLICES; k++) expect(maskAt(mask, k, 59, 30)).toBe(0);
    });

    it('removes air around the body', () => {
      expect(maskAt(mask, 5, 0, 0)).toBe(0);
      expect(maskAt(mask, 5, 30, 2)).toBe(0);
    });

    it('fills the nodule hole', () => {
      expect(maskAt(mask, 8, 32, 19)).toBe(1);
    });

    it('keeps both lung centres', () => {
      expect(maskAt(mask, 5, 32, 19)).toBe(1);
      expect(maskAt(mask, 5, 32, 45)).toBe(1);
    });
  });

  describe('when the airway search is off', () => {
    it('keeps the trachea', () => {
      const mask = computeLungMask(buildChest(), { airways: false });
      expect(mask.airwayVoxels).toBe(0);
      expect(maskAt(mask, 18, 24, 32)).toBe(1);
    });
  });

  const { dir, present } = sharedDataDir('lung-pet-ct-dx');
  const series = join(dir, 'Lung-PET-CT-Dx/manifest-1675442780019/Lung-PET-CT-Dx/Lung_Dx-A0001/04-04-2007-NA-Chest-07990/2.000000-5mm-40805');

  describe.skipIf(!present)('when reading the Lung-PET-CT-Dx A0001 5 mm series', () => {
    let volume: Volume;
    let mask: LungMask;

    beforeAll(async () => {
      volume = await loadSeriesVolume(readdirSync(series).map((name) => join(series, name)));
      mask = computeLungMask(volume);
    });

    it('separates two lungs', () => {
      expect(mask.lungs).toBe(2);
      const total = mask.componentVoxels[0] + mask.componentVoxels[1];
      // The right lung is usually the larger, at about 55 % of both; each lung is far above a stray component.
      expect(mask.componentVoxels[1] / total).toBeGreaterThan(0.3);
    });

    it('leaves out the trachea above the lungs', () => {
      // Slices 56 to 63 (the top 40 mm) cut the neck, where the trachea is the only air inside the body.
      const sliceSize = volume.rows * volume.columns;
      let voxels = 0;
      for (let i = 56 * sliceSize; i < 64 * sliceSize; i++) voxels += mask.mask[i];
      expect(voxels).toBe(0);
      expect(mask.airwayVoxels).toBeGreaterThan(0);
    });
  });
});
