import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DicomReadError, loadSeriesVolume, parseDicom, readCtFrames, readCtSlice, scanArchive, SeriesAssemblyError } from '../src';
import { ctSliceElements, encapsulatedPart10, encodeElements, int16Pixels, part10, RLE_LOSSLESS, uniformRleFile, uniformRleFrame, type BuiltElement } from './helpers/dicom-builder';

const work = mkdtempSync(join(tmpdir(), 'covnet-parse-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function write(name: string, bytes: Uint8Array): string {
  const path = join(work, name);
  writeFileSync(path, bytes);
  return path;
}

async function rejection(promise: Promise<unknown>): Promise<DicomReadError> {
  const error = await promise.catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(DicomReadError);
  return error as DicomReadError;
}

// Hand computation for the default 2x2 slice: stored [0, 100, -100, 1000] * 1 - 1024.
const DEFAULT_HU = [-1024, -924, -1124, -24];
const IMPLICIT = '1.2.840.10008.1.2';
const EXPLICIT = '1.2.840.10008.1.2.1';

describe('parseDicom', () => {
  describe('when the file has no preamble and no file meta', () => {
    it('reads implicit VR little endian', async () => {
      const path = write('bare-implicit', encodeElements(ctSliceElements(), false, true));
      const { hu } = await readCtSlice(path);
      expect([...hu]).toEqual(DEFAULT_HU);
    });

    it('reads explicit VR big endian', async () => {
      const elements = ctSliceElements().map((element) => (element.tag === 0x7fe00010 ? { ...element, value: int16Pixels([0, 100, -100, 1000], false) } : element));
      const path = write('bare-big', encodeElements(elements, true, false));
      const { hu } = await readCtSlice(path);
      expect([...hu]).toEqual(DEFAULT_HU);
    });
  });

  describe('when the file meta has no preamble', () => {
    it('reads the dataset', async () => {
      const path = write('no-preamble.dcm', part10(ctSliceElements(), EXPLICIT, { preamble: false }));
      const { hu } = await readCtSlice(path);
      expect([...hu]).toEqual(DEFAULT_HU);
    });
  });

  describe('when a sequence has one item', () => {
    it('returns an array of one', () => {
      const bytes = part10([...ctSliceElements(), { tag: 0x00081140, vr: 'SQ', items: [[{ tag: 0x00081155, vr: 'UI', value: '2.25.9' }]] }], EXPLICIT);
      const { dataset } = parseDicom(bytes, 'one-item', { maxInflatedBytes: 0 });
      const items = dataset.sequence(0x00081140);
      expect(Array.isArray(items)).toBe(true);
      expect(items).toHaveLength(1);
      expect(items[0].string(0x00081155)).toBe('2.25.9');
    });
  });

  describe('when a private sequence of undefined length contains item-tag bytes', () => {
    it('reads past it to the pixels', async () => {
      // Binary value that contains an item tag, an item delimiter and a sequence delimiter.
      const trap = Uint8Array.from([0xfe, 0xff, 0x00, 0xe0, 0xfe, 0xff, 0x0d, 0xe0, 0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
      const privateSequence: BuiltElement = { tag: 0x00091010, vr: 'SQ', undefinedLength: true, items: [[{ tag: 0x00091001, vr: 'OB', value: trap }]] };
      for (const [name, syntax] of [['private-explicit.dcm', EXPLICIT], ['private-implicit.dcm', IMPLICIT]]) {
        const path = write(name, part10([...ctSliceElements(), privateSequence], syntax));
        const { hu } = await readCtSlice(path);
        expect([...hu]).toEqual(DEFAULT_HU);
      }
    });
  });

  describe('when elements have VR UN', () => {
    it('reads a UN sequence as implicit VR', () => {
      const un: BuiltElement = { tag: 0x00091020, vr: 'UN', undefinedLength: true, items: [[{ tag: 0x00091021, vr: 'LO', value: 'private' }]] };
      const plain: BuiltElement = { tag: 0x00091030, vr: 'UN', value: Uint8Array.from([1, 2, 3, 4]) };
      const { dataset } = parseDicom(part10([...ctSliceElements(), un, plain], EXPLICIT), 'un', { maxInflatedBytes: 0 });
      expect(dataset.sequence(0x00091020)[0].string(0x00091021)).toBe('private');
      expect([...dataset.valueBytes(0x00091030)!]).toEqual([1, 2, 3, 4]);
    });
  });

  describe('when the file is truncated', () => {
    it('names the tag and byte offset', async () => {
      const whole = part10(ctSliceElements(), EXPLICIT);
      const path = write('truncated.dcm', whole.subarray(0, 200));
      const error = await rejection(readCtSlice(path));
      expect(error.code).toBe('truncated');
      expect(error.message).toContain(path);
      expect(error.message).toMatch(/at byte offset \d+/);
    });
  });

  describe('when the file is not DICOM', () => {
    it('rejects it as not-dicom', async () => {
      const path = write('notes.txt', new Uint8Array(Buffer.from('exam notes, not an image\n'.repeat(20))));
      const error = await rejection(readCtSlice(path));
      expect(error.code).toBe('not-dicom');
      expect(error.message).toContain(path);
    });
  });

  describe('when the file is over the size limit', () => {
    it('rejects it as too-large', async () => {
      const path = write('large.dcm', part10(ctSliceElements(), EXPLICIT));
      const error = await rejection(readCtSlice(path, { maxFileBytes: 100 }));
      expect(error.code).toBe('too-large');
    });
  });
});

describe('Enhanced CT', () => {
  const FRAMES = [
    { z: 10, pixels: [0, 1, 2, 3] },
    { z: 12, pixels: [10, 11, 12, 13] },
    { z: 11, pixels: [20, 21, 22, 23] },
  ];
  const topLevelOnly = new Set([0x00200032, 0x00200037, 0x00281052, 0x00281053, 0x00280030, 0x7fe00010]);

  function enhanced(frames: typeof FRAMES): Uint8Array {
    const base = ctSliceElements({ series: '2.25.300' }).filter((element) => !topLevelOnly.has(element.tag));
    const shared: BuiltElement[] = [
      { tag: 0x00289110, vr: 'SQ', items: [[{ tag: 0x00280030, vr: 'DS', value: '0.5\\0.5' }]] },
      { tag: 0x00209116, vr: 'SQ', items: [[{ tag: 0x00200037, vr: 'DS', value: '1\\0\\0\\0\\1\\0' }]] },
      { tag: 0x00289145, vr: 'SQ', items: [[{ tag: 0x00281052, vr: 'DS', value: '-1000' }, { tag: 0x00281053, vr: 'DS', value: '2' }]] },
    ];
    const perFrame = frames.map((frame): BuiltElement[] => [{ tag: 0x00209113, vr: 'SQ', items: [[{ tag: 0x00200032, vr: 'DS', value: `0\\0\\${frame.z}` }]] }]);
    return part10(
      [
        ...base,
        { tag: 0x00280008, vr: 'IS', value: String(frames.length) },
        { tag: 0x52009229, vr: 'SQ', items: [shared] },
        { tag: 0x52009230, vr: 'SQ', undefinedLength: true, items: perFrame },
        { tag: 0x7fe00010, vr: 'OW', value: int16Pixels(frames.flatMap((frame) => frame.pixels)) },
      ],
      EXPLICIT,
    );
  }

  it('reads rescale from functional groups', async () => {
    const path = write('enhanced-3.dcm', enhanced(FRAMES));
    const frames = await readCtFrames(path);
    expect(frames).toHaveLength(3);
    // Hand computation: stored * 2 - 1000.
    expect([...frames[1].hu]).toEqual([-980, -978, -976, -974]);
    expect(frames[1].header.imagePositionPatient).toEqual([0, 0, 12]);
  });

  it('gives one volume from 1 or N frames', async () => {
    const multi = write('enhanced-all.dcm', enhanced(FRAMES));
    const singles = FRAMES.map((frame, i) => write(`enhanced-one-${i}.dcm`, enhanced([frame])));
    const fromMulti = await loadSeriesVolume([multi]);
    const fromSingles = await loadSeriesVolume(singles);
    expect(fromMulti.slices).toBe(3);
    expect(fromSingles.slices).toBe(3);
    expect([...fromMulti.hu]).toEqual([...fromSingles.hu]);
    // Ordered by z: frames at 10, 11, 12 mm, so the third frame comes second.
    expect([...fromMulti.hu.subarray(4, 8)]).toEqual([-960, -958, -956, -954]);
  });
});

describe('scanArchive with broken files', () => {
  it('reports each file and goes on', async () => {
    const dir = mkdtempSync(join(work, 'archive-'));
    for (let i = 0; i < 3; i++) writeFileSync(join(dir, `s${i}.dcm`), part10(ctSliceElements({ instance: i + 1, position: [0, 0, i * 2] }), EXPLICIT));
    const whole = part10(ctSliceElements({ instance: 9, position: [0, 0, 9] }), EXPLICIT);
    // Cut inside PixelData, the last element.
    writeFileSync(join(dir, 'broken.dcm'), whole.subarray(0, whole.length - 4));
    writeFileSync(join(dir, 'readme.txt'), 'not an image');
    const progress: number[] = [];
    const report = await scanArchive(dir, { concurrency: 2, onProgress: (done) => progress.push(done) });
    expect(report.series).toHaveLength(1);
    expect(report.series[0].slices).toBe(3);
    expect(report.skipped.map((entry) => [entry.path, entry.code])).toEqual([
      [join(dir, 'broken.dcm'), 'truncated-pixel-data'],
      [join(dir, 'readme.txt'), 'not-dicom'],
    ]);
    expect(progress).toEqual([0, 2, 4, 5]);
  });
});

describe('scanArchive with symbolic links and special files', () => {
  it('follows links and reports what it cannot read', async () => {
    const dir = mkdtempSync(join(work, 'links-'));
    const images = join(dir, 'images');
    mkdirSync(images);
    for (let i = 0; i < 2; i++) writeFileSync(join(images, `s${i}.dcm`), part10(ctSliceElements({ instance: i + 1, position: [0, 0, i * 2] }), EXPLICIT));
    // A third slice that the folder only links to, from outside the scanned tree.
    const outside = mkdtempSync(join(work, 'outside-'));
    writeFileSync(join(outside, 'third.dcm'), part10(ctSliceElements({ instance: 3, position: [0, 0, 4] }), EXPLICIT));
    symlinkSync(join(outside, 'third.dcm'), join(images, 's2.dcm'));
    symlinkSync(join(dir, 'missing.dcm'), join(dir, 'broken-link'));
    // A link back to the root, which a naive walk would follow forever.
    symlinkSync(dir, join(images, 'loop'));
    const fifo = join(dir, 'pipe');
    const fifoCreated = spawnSync('mkfifo', [fifo]);

    const report = await scanArchive(dir);
    expect(report.series).toHaveLength(1);
    expect(report.series[0].slices).toBe(3);
    const skipped = new Map(report.skipped.map((entry) => [entry.path, entry]));
    expect(skipped.get(join(dir, 'broken-link'))?.code).toBe('not-a-file');
    expect(skipped.get(join(dir, 'broken-link'))?.reason).toContain('broken symbolic link');
    expect(skipped.get(join(images, 'loop'))?.reason).toBe(`the same folder as ${dir}, which is already scanned`);
    if (fifoCreated.status === 0) expect(skipped.get(fifo)?.reason).toContain('FIFO, not a regular file');
    expect(report.skipped).toHaveLength(fifoCreated.status === 0 ? 3 : 2);
  });
});

describe('scanArchive with second paths to files and folders', () => {
  it('reads each file and folder once', async () => {
    const dir = mkdtempSync(join(work, 'paths-'));
    // "a-view" sorts before the real folder "b-study", which it links to.
    const study = join(dir, 'b-study');
    mkdirSync(study);
    for (let i = 0; i < 3; i++) writeFileSync(join(study, `s${i}.dcm`), part10(ctSliceElements({ instance: i + 1, position: [0, 0, i] }), EXPLICIT));
    symlinkSync('b-study', join(dir, 'a-view'));
    // A second path to one slice, as "by date" views of an export have.
    const byDate = join(dir, 'by-date');
    mkdirSync(byDate);
    symlinkSync(join(study, 's0.dcm'), join(byDate, 's0.dcm'));
    // A link to the folder above the root would scan the root and its siblings again.
    symlinkSync('../..', join(study, 'up'));

    const report = await scanArchive(dir);
    expect(report.series).toHaveLength(1);
    expect(report.series[0].slices).toBe(3);
    expect(report.series[0].dir).toBe(study);
    const reasons = Object.fromEntries(report.skipped.map((entry) => [entry.path, entry.reason]));
    expect(reasons).toEqual({
      [join(dir, 'a-view')]: `the same folder as ${study}, which is already scanned`,
      [join(byDate, 's0.dcm')]: `the same file as ${join(study, 's0.dcm')}, which is already listed`,
      [join(study, 'up')]: `symbolic link to ${realpathSync(work)}, which contains the scanned folder`,
    });
  });
});

describe('scanArchive with headersOnly', () => {
  it('finds the series without HU statistics', async () => {
    const dir = mkdtempSync(join(work, 'headers-'));
    for (let i = 0; i < 4; i++) writeFileSync(join(dir, `s${i}.dcm`), part10(ctSliceElements({ instance: 4 - i, position: [0, 0, i * 2.5] }), EXPLICIT));
    writeFileSync(join(dir, 'readme.txt'), 'not an image');

    const full = await scanArchive(dir);
    const headers = await scanArchive(dir, { headersOnly: true });
    expect(headers.series).toHaveLength(1);
    expect(headers.series[0].files).toEqual(full.series[0].files);
    expect(headers.series[0].sliceSpacing).toBe(2.5);
    expect(headers.series[0].huMean).toBeUndefined();
    expect(full.series[0].huMean).toBeTypeOf('number');
    expect(headers.skipped.map((entry) => entry.code)).toEqual(['not-dicom']);
  });
});

describe('NumberOfFrames beyond the pixel data', () => {
  it('rejects a native file at once', async () => {
    const path = write('frames-huge.dcm', part10(ctSliceElements({ extra: [{ tag: 0x00280008, vr: 'IS', value: '2147483647' }] }), EXPLICIT));
    const started = performance.now();
    const error = await readCtFrames(path).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(error).toBeInstanceOf(DicomReadError);
    expect((error as DicomReadError).code).toBe('truncated-pixel-data');
    expect((error as DicomReadError).tag).toBe('NumberOfFrames (0028,0008)');
    // 2x2 pixels of 2 bytes: 8 bytes per frame.
    expect((error as DicomReadError).reason).toBe(`NumberOfFrames 2147483647 needs ${2147483647 * 8} bytes of PixelData, which has 8`);
  });

  it('rejects more frames than fragments', async () => {
    const path = write('frames-fragments.dcm', uniformRleFile(16, 1024, { extra: [{ tag: 0x00280008, vr: 'IS', value: '3' }] }));
    const error = await readCtFrames(path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DicomReadError);
    expect((error as DicomReadError).code).toBe('invalid-tag');
    expect((error as DicomReadError).reason).toBe('NumberOfFrames 3 is more than the 1 fragments of the encapsulated PixelData');
  });
});

describe('signed 8-bit data in implicit VR', () => {
  it('applies a negative PixelPaddingValue', async () => {
    const replaced = new Set([0x00280100, 0x00280101, 0x00280102, 0x7fe00010]);
    const elements: BuiltElement[] = [
      ...ctSliceElements().filter((element) => !replaced.has(element.tag)),
      { tag: 0x00280100, vr: 'US', value: [8] },
      { tag: 0x00280101, vr: 'US', value: [8] },
      { tag: 0x00280102, vr: 'US', value: [7] },
      // -100 as implicit VR gives it: the unsigned 16-bit pattern 0xFF9C.
      { tag: 0x00280120, vr: 'US', value: [0xff9c] },
      // Stored -100, 5, -100, -16 as signed bytes.
      { tag: 0x7fe00010, vr: 'OB', value: new Uint8Array([0x9c, 0x05, 0x9c, 0xf0]) },
    ];
    const path = write('padding-s8-implicit.dcm', part10(elements, '1.2.840.10008.1.2'));
    const [slice] = await readCtFrames(path);
    // Padding becomes -1024; the others are stored value + RescaleIntercept -1024.
    expect(Array.from(slice.hu)).toEqual([-1024, 5 - 1024, -1024, -16 - 1024]);
  });
});

describe('readCtFrames error details', () => {
  it('reports a missing file as io-error', async () => {
    const path = join(work, 'does-not-exist.dcm');
    const error = await readCtFrames(path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DicomReadError);
    expect((error as DicomReadError).code).toBe('io-error');
    expect((error as DicomReadError).path).toBe(path);
  });

  it('rejects a compressed frame too large to decode', async () => {
    const size = new Set([0x00280010, 0x00280011]);
    const elements: BuiltElement[] = [
      ...ctSliceElements().filter((element) => !size.has(element.tag)),
      { tag: 0x00280010, vr: 'US', value: [65535] },
      { tag: 0x00280011, vr: 'US', value: [65535] },
    ];
    const path = write('rle-65535.dcm', encapsulatedPart10(elements, RLE_LOSSLESS, [uniformRleFrame(16, 0)]));
    const error = await readCtFrames(path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DicomReadError);
    expect((error as DicomReadError).code).toBe('too-large');
    // 65535 * 65535 * 2 bytes against the default limit of 1 GiB.
    expect((error as DicomReadError).reason).toBe(`a 65535x65535 frame at 16 bits needs ${65535 * 65535 * 2} bytes decoded, more than the limit of ${1024 ** 3}`);
  });

  it('tells an empty RescaleSlope from a missing one', async () => {
    const withoutSlope = ctSliceElements().filter((element) => element.tag !== 0x00281053);
    const empty = write('slope-empty.dcm', part10([...withoutSlope, { tag: 0x00281053, vr: 'DS', value: '' }], EXPLICIT));
    const missing = write('slope-missing.dcm', part10(withoutSlope, EXPLICIT));
    await expect(readCtFrames(empty)).rejects.toThrow('RescaleSlope is empty');
    await expect(readCtFrames(missing)).rejects.toThrow('RescaleSlope is missing');
  });
});

describe('loadSeriesVolume on files of two series', () => {
  it('rejects them as mixed-series', async () => {
    const paths = [0, 1, 2].map((i) => write(`mixed-${i}.dcm`, part10(ctSliceElements({ instance: i + 1, position: [0, 0, i], series: i === 2 ? '2.25.999' : '2.25.200' }), EXPLICIT)));
    const error = await loadSeriesVolume(paths).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SeriesAssemblyError);
    expect((error as SeriesAssemblyError).code).toBe('mixed-series');
    expect((error as SeriesAssemblyError).reason).toBe(`${paths[2]} belongs to series 2.25.999 but ${paths[0]} to series 2.25.200`);
  });
});
