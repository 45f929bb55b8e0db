import { basename } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadSeriesVolume, scanArchive, type ScanReport } from '../src';
import { sharedDataDir } from './shared-data';

// Expected values come from pydicom 2.3.1 with numpy 1.24 (computed once, written here as
// literals): HU = pixel_array * RescaleSlope + RescaleIntercept per slice, slices sorted by
// ImagePositionPatient projected on the cross product of the ImageOrientationPatient cosines,
// spacing = median gap of those projections, mean over all voxels in float64. Stored values
// equal to PixelPaddingValue (-2000 in LIDC-IDRI-0002) count as air, -1024 HU.
interface Expected {
  dirEnds: string;
  slices: number;
  rows: number;
  columns: number;
  sliceSpacing: number;
  pixelSpacing: [number, number];
  huMin: number;
  huMax: number;
  huMean: number;
  firstFile: string;
  lastFile: string;
  firstZ: number;
  lastZ: number;
  /** HU of the first (lowest) slice at flat indices 0, 1000, 130000 and 200000. */
  firstSlicePixels: [number, number, number, number];
}

const LUNG_PET_CT_DX: Expected[] = [
  { dirEnds: '2.000000-5mm-40805', slices: 64, rows: 512, columns: 512, sliceSpacing: 5.0, pixelSpacing: [0.841796875, 0.841796875], huMin: -1024, huMax: 2976, huMean: -675.9681776762009, firstFile: '1-64.dcm', lastFile: '1-01.dcm', firstZ: -439.0, lastZ: -124.0, firstSlicePixels: [-1024, -1024, -973, 4] },
  { dirEnds: '2.000000-ThoraxRoutine  8.0.0  B70f-62919', slices: 30, rows: 512, columns: 512, sliceSpacing: 8.0, pixelSpacing: [0.646484375, 0.646484375], huMin: -1024, huMax: 1904, huMean: -536.0954568227132, firstFile: '1-30.dcm', lastFile: '1-01.dcm', firstZ: 80.0, lastZ: 312.0, firstSlicePixels: [-996, -1024, -62, 105] },
];

const LIDC_IDRI: Expected[] = [
  { dirEnds: '179049373636438705059720603192', slices: 16, rows: 512, columns: 512, sliceSpacing: 2.5, pixelSpacing: [0.703125, 0.703125], huMin: -2048, huMax: 3071, huMean: -860.9282729625702, firstFile: '-132.500000.dcm', lastFile: '-95.000000.dcm', firstZ: -132.5, lastZ: -95.0, firstSlicePixels: [-2048, -2048, -117, -868] },
  { dirEnds: '619372068417051974713149104919', slices: 12, rows: 512, columns: 512, sliceSpacing: 1.25, pixelSpacing: [0.681641, 0.681641], huMin: -1024, huMax: 1561, huMean: -603.9959697723389, firstFile: '-94.500000.dcm', lastFile: '-80.750000.dcm', firstZ: -94.5, lastZ: -80.75, firstSlicePixels: [-1024, -1024, -95, 68] },
  { dirEnds: '170706757615202213033480003264', slices: 11, rows: 512, columns: 512, sliceSpacing: 2.5, pixelSpacing: [0.820312, 0.820312], huMin: -2048, huMax: 1978, huMean: -848.3958466269753, firstFile: '-204.000000.dcm', lastFile: '-179.000000.dcm', firstZ: -204.0, lastZ: -179.0, firstSlicePixels: [-2048, -2048, -111, -865] },
];

function describeArchive(name: string, expectedSeries: Expected[]) {
  const { dir, present } = sharedDataDir(name);

  describe.skipIf(!present)(`scanArchive on ${name}`, () => {
    let report: ScanReport;
    beforeAll(async () => {
      report = await scanArchive(dir);
    });

    it('finds every series', () => {
      expect(report.series).toHaveLength(expectedSeries.length);
      expect(report.rejected).toEqual([]);
    });

    it('lists the non-DICOM files as skipped', () => {
      for (const skipped of report.skipped) {
        expect(skipped.code).toBe('not-dicom');
        expect(skipped.path.endsWith('.dcm')).toBe(false);
      }
    });

    for (const expected of expectedSeries) {
      describe(`when reading series ${expected.dirEnds}`, () => {
        const find = () => {
          const series = report.series.find((entry) => entry.dir.endsWith(expected.dirEnds));
          if (series === undefined) throw new Error(`series ${expected.dirEnds} not found in ${report.series.map((entry) => entry.dir).join(', ')}`);
          return series;
        };

        it('matches pydicom geometry', () => {
          const series = find();
          expect(series.slices).toBe(expected.slices);
          expect(series.rows).toBe(expected.rows);
          expect(series.columns).toBe(expected.columns);
          expect(series.sliceSpacing).toBeCloseTo(expected.sliceSpacing, 6);
          expect(series.pixelSpacing[0]).toBeCloseTo(expected.pixelSpacing[0], 9);
          expect(series.pixelSpacing[1]).toBeCloseTo(expected.pixelSpacing[1], 9);
        });

        it('matches pydicom HU statistics', () => {
          const series = find();
          expect(series.huMin).toBe(expected.huMin);
          expect(series.huMax).toBe(expected.huMax);
          expect(series.huMean).toBeCloseTo(expected.huMean, 6);
        });

        it('orders files by position, not by name', () => {
          const series = find();
          expect(basename(series.files[0])).toBe(expected.firstFile);
          expect(basename(series.files[series.files.length - 1])).toBe(expected.lastFile);
        });

        it('loads a volume in position order', async () => {
          const series = find();
          // Reversed input must not change the result.
          const volume = await loadSeriesVolume([...series.files].reverse());
          expect(volume.slices).toBe(expected.slices);
          expect(volume.sliceSpacing).toBeCloseTo(expected.sliceSpacing, 6);
          expect(volume.hu.length).toBe(expected.slices * expected.rows * expected.columns);
          const [p0, p1, p2, p3] = expected.firstSlicePixels;
          expect(volume.hu[0]).toBe(p0);
          expect(volume.hu[1000]).toBe(p1);
          expect(volume.hu[130000]).toBe(p2);
          expect(volume.hu[200000]).toBe(p3);
          expect(expected.lastZ - expected.firstZ).toBeCloseTo((expected.slices - 1) * expected.sliceSpacing, 6);
        });
      });
    }
  });
}

describeArchive('lung-pet-ct-dx', LUNG_PET_CT_DX);
describeArchive('lidc-idri-c2c', LIDC_IDRI);
