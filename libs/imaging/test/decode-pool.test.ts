import { readdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecodePool, DicomReadError, loadSeriesVolume, scanArchive } from '../src';
import { ctSliceElements, part10, uniformRleFile } from './helpers/dicom-builder';
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


describe('DecodePool scanning one file at a time', () => {
  let pool: DecodePool;
  let work = '';

  beforeAll(async () => {
    pool = new DecodePool(2);
    work = await mkdtemp(join(tmpdir(), 'covnet-pool-scan-'));
  });

  afterAll(async () => {
    await pool?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('reads HU statistics of a compressed file', async () => {
    const path = join(work, 'small.dcm');
    await writeFile(path, uniformRleFile(16, 1100));
    const scanned = await pool.scanFile(path);
    // Stored 1100 with RescaleIntercept -1024: 76 HU at each of the 256 pixels.
    expect(scanned).toEqual({ frames: [expect.objectContaining({ min: 76, max: 76, sum: 76 * 256, count: 256 })] });
  });

  it('stops a worker that exceeds the time limit', async () => {
    // 4096 x 4096 samples take the JavaScript RLE decoder far longer than 5 ms on any machine.
    const slow = join(work, 'slow.dcm');
    await writeFile(slow, uniformRleFile(4096, 1100));
    const scanned = await pool.scanFile(slow, { timeoutMs: 5 });
    expect(scanned).toHaveProperty('skip');
    const { skip } = scanned as Extract<typeof scanned, { skip: unknown }>;
    expect(skip.code).toBe('timed-out');
    expect(skip.reason).toContain('the decode thread was stopped');

    // The replacement worker reads the next files.
    const small = join(work, 'after.dcm');
    await writeFile(small, uniformRleFile(16, 1024));
    const results = await Promise.all([pool.scanFile(small), pool.scanFile(small), pool.scanFile(small)]);
    for (const result of results) expect(result).toEqual({ frames: [expect.objectContaining({ min: 0, max: 0, count: 256 })] });
  });

  it('stops a series load that exceeds the time limit', async () => {
    const dir = await mkdtemp(join(work, 'slow-series-'));
    // Headers parse at once; decoding the second slice is what takes long.
    await writeFile(join(dir, 'first.dcm'), uniformRleFile(4096, 1100, { instance: 1, position: [0, 0, 0] }));
    const slow = join(dir, 'second.dcm');
    await writeFile(slow, uniformRleFile(4096, 1100, { instance: 2, position: [0, 0, 1] }));
    await writeFile(join(dir, 'fast.dcm'), uniformRleFile(16, 1100));
    const error = await loadSeriesVolume([join(dir, 'first.dcm'), slow], { timeoutMs: 5 }, { pool }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DicomReadError);
    expect((error as DicomReadError).code).toBe('timed-out');
    // Either slice may be the first to run out of time, one on each worker.
    expect([join(dir, 'first.dcm'), slow]).toContain((error as DicomReadError).path);

    const after = await pool.scanFile(join(dir, 'fast.dcm'));
    expect(after).toEqual({ frames: [expect.objectContaining({ min: 76, max: 76, count: 256 })] });
  });

  it('gives scanArchive the report of the calling thread', async () => {
    const dir = await mkdtemp(join(work, 'archive-'));
    for (let i = 0; i < 5; i++) await writeFile(join(dir, `s${i}.dcm`), part10(ctSliceElements({ instance: i + 1, position: [0, 0, i * 1.5] }), '1.2.840.10008.1.2.1'));
    await writeFile(join(dir, 'notes.txt'), 'not an image');
    const inThread = await scanArchive(dir);
    const pooled = await scanArchive(dir, { pool });
    expect(pooled).toEqual(inThread);
    expect(pooled.series[0].slices).toBe(5);
  });
});

describe('DecodePool closed with work in progress', () => {
  it('fails the waiting requests', async () => {
    const work = await mkdtemp(join(tmpdir(), 'covnet-pool-close-'));
    try {
      const slow = join(work, 'slow.dcm');
      await writeFile(slow, uniformRleFile(4096, 1100));
      const pool = new DecodePool(1);
      const requests = Promise.allSettled([pool.scanFile(slow), pool.scanFile(slow), loadSeriesVolume([slow, slow], {}, { pool })]);
      await pool.close();
      const results = await requests;
      // The running scan, the queued scan and the load.
      for (const result of results) {
        expect(result.status).toBe('rejected');
        expect((result as PromiseRejectedResult).reason.message).toBe('the decode pool is closed');
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
