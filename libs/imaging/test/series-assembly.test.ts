import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSeriesVolume, scanArchive, selectLungSeries } from '../src';
import { ctSliceElements, part10, type CtSliceSpec } from './helpers/dicom-builder';

const work = mkdtempSync(join(tmpdir(), 'covnet-series-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function writeSeries(dir: string, specs: CtSliceSpec[]): string[] {
  return specs.map((spec, i) => {
    const path = join(dir, `${spec.series ?? 's'}-${i}.dcm`);
    writeFileSync(path, part10(ctSliceElements({ instance: i + 1, ...spec }), '1.2.840.10008.1.2.1'));
    return path;
  });
}

function folder(name: string): string {
  return mkdtempSync(join(work, `${name}-`));
}

describe('scanArchive series assembly', () => {
  describe('when the stack is sheared by gantry tilt', () => {
    it('rejects the series', async () => {
      const dir = folder('tilt');
      // Each slice moves 1 mm in y per 2 mm in z: atan(1/2) = 26.6 degrees off the normal.
      writeSeries(dir, [0, 1, 2, 3].map((i) => ({ series: '2.25.1', position: [0, i, i * 2] as [number, number, number] })));
      const report = await scanArchive(dir);
      expect(report.series).toHaveLength(0);
      expect(report.rejected[0].code).toBe('gantry-tilt');
      expect(report.rejected[0].reason).toContain('26.6 degrees');
    });
  });

  describe('when several slices are missing', () => {
    it('rejects the series', async () => {
      const dir = folder('missing');
      writeSeries(dir, [0, 2, 4, 12, 14].map((z) => ({ series: '2.25.2', position: [0, 0, z] as [number, number, number] })));
      const report = await scanArchive(dir);
      expect(report.rejected[0].code).toBe('missing-slices');
      expect(report.rejected[0].reason).toContain('gap of 8.00 mm');
    });
  });

  describe('when one gap is uneven', () => {
    it('resamples to the median spacing', async () => {
      const dir = folder('uneven');
      // z = 0, 2, 4, 7, 9: median gap 2 mm, one gap of 3 mm. Stored value = z * 10 in every pixel.
      const zs = [0, 2, 4, 7, 9];
      const files = writeSeries(dir, zs.map((z) => ({ series: '2.25.3', position: [0, 0, z] as [number, number, number], pixels: [z * 10, z * 10, z * 10, z * 10], intercept: 0 })));
      const report = await scanArchive(dir);
      expect(report.series[0].uniformSpacing).toBe(false);
      const volume = await loadSeriesVolume(files);
      // Grid z = 0, 2, 4, 6, 8: linear interpolation of a value that is 10 * z gives 10 * z.
      expect(volume.slices).toBe(5);
      expect(volume.sliceSpacing).toBe(2);
      expect([0, 1, 2, 3, 4].map((k) => volume.hu[k * 4])).toEqual([0, 20, 40, 60, 80]);
    });
  });

  describe('when a series has two overlapping acquisitions', () => {
    it('splits it by AcquisitionNumber', async () => {
      const dir = folder('acquisitions');
      const specs = [1, 2].flatMap((acquisition) =>
        [0, 2, 4].map((z) => ({ series: '2.25.4', position: [0, 0, z] as [number, number, number], extra: [{ tag: 0x00200012, vr: 'IS', value: String(acquisition) }] })),
      );
      writeSeries(dir, specs);
      const report = await scanArchive(dir);
      expect(report.rejected).toEqual([]);
      expect(report.series.map((series) => [series.acquisitionNumber, series.slices])).toEqual([
        [1, 3],
        [2, 3],
      ]);
    });
  });
});

describe('selectLungSeries', () => {
  it('prefers the sharp kernel among axial primaries', async () => {
    const dir = folder('select');
    const z = (count: number) => Array.from({ length: count }, (_, i) => [0, 0, i * 2] as [number, number, number]);
    writeSeries(dir, z(10).map((position) => ({ series: '2.25.10', position, kernel: 'B30f' })));
    writeSeries(dir, z(10).map((position) => ({ series: '2.25.11', position, kernel: 'B70f' })));
    writeSeries(dir, z(20).map((position) => ({ series: '2.25.12', position, kernel: 'B70f', imageType: 'DERIVED\\SECONDARY\\AXIAL' })));
    // Coronal reformat: normal along y.
    writeSeries(dir, z(30).map(([x, , zz]) => ({ series: '2.25.13', position: [x, zz, 0] as [number, number, number], orientation: [1, 0, 0, 0, 0, -1] })));
    writeSeries(dir, z(4).map((position) => ({ series: '2.25.14', position, kernel: 'LUNG' })));
    const report = await scanArchive(dir);
    const choice = selectLungSeries(report.series);
    expect(choice.chosen?.seriesInstanceUID).toBe('2.25.11');
    expect(choice.reasons[0]).toContain('chose 2.25.11');
    expect(choice.reasons.some((reason) => reason.startsWith('2.25.13: not axial'))).toBe(true);
    expect(choice.reasons.some((reason) => reason.startsWith('2.25.12: ImageType DERIVED'))).toBe(true);
    expect(choice.reasons.some((reason) => reason.startsWith('2.25.14: 4 slices'))).toBe(true);
    expect(choice.reasons.some((reason) => reason.startsWith('2.25.10: ranked below'))).toBe(true);
  });
});
