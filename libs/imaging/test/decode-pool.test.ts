import { readdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecodePool, DicomReadError, loadSeriesVolume } from '../src';
import { sharedDataDir } from './shared-data';

const lung = sharedDataDir('lung-pet-ct-dx');
const SERIES = join(lung.dir, 'Lung-PET-CT-Dx/manifest-1675442780019/Lung-PET-CT-Dx/Lung_Dx-A0001/04-04-2007-NA-Chest-07990/2.000000-5mm-40805');

describe.skipIf(!lung.present)('DecodePool', () => {
  let pool: DecodePool;
  let files: string[] = [];

  beforeAll(async () => {
    pool = new DecodePool(2);
    // Reversed, so both paths must order the slices themselves.
    files = (await readdir(SERIES)).map((name) => join(SERIES, name)).reverse();
  });

  afterAll(() => pool?.close());

  describe('when loading a real series', () => {
    it('gives the volume of the single-thread reader', async () => {
      const single = await loadSeriesVolume(files);
      const pooled = await loadSeriesVolume(files, {}, { pool });
      expect(pooled.slices).toBe(64);
      expect([pooled.rows, pooled.columns, pooled.sliceSpacing]).toEqual([single.rows, single.columns, single.sliceSpacing]);
      expect(Buffer.from(pooled.hu.buffer).equals(Buffer.from(single.hu.buffer))).toBe(true);
      // The same HU mean as pydicom 2.3.1 with numpy over the whole series.
      expect(pooled.hu.reduce((sum, v) => sum + v, 0) / pooled.hu.length).toBeCloseTo(-675.9681776762009, 6);
    });
  });

  describe('when a slice is missing', () => {
    it('resamples as the single-thread reader does', async () => {
      // Without the 11th slice of the name order, one gap is twice the others.
      const sorted = [...files].sort();
      const gapped = [...sorted.slice(0, 10), ...sorted.slice(11)];
      const single = await loadSeriesVolume(gapped);
      const pooled = await loadSeriesVolume(gapped, {}, { pool });
      // Resampled to the median gap over the same span, so the 64 slice positions come back.
      expect(single.slices).toBe(64);
      expect(pooled.slices).toBe(64);
      expect(Buffer.from(pooled.hu.buffer).equals(Buffer.from(single.hu.buffer))).toBe(true);
    });
  });

  describe('when a file is not DICOM', () => {
    let work = '';
    afterAll(() => rm(work, { recursive: true, force: true }));

    it('rejects with a DicomReadError naming the file', async () => {
      work = await mkdtemp(join(tmpdir(), 'covnet-pool-'));
      const bad = join(work, 'notes.dcm');
      await writeFile(bad, 'not a DICOM file');
      const error = await loadSeriesVolume([...files.slice(0, 3), bad], {}, { pool }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DicomReadError);
      expect((error as DicomReadError).path).toBe(bad);
      // The pool keeps working after a rejected request.
      expect((await loadSeriesVolume(files.slice(0, 4), {}, { pool })).slices).toBe(4);
    });
  });
});
