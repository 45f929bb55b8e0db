import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scanArchive, ScanIndex, writeSyntheticArchive } from '@covnet/imaging';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SiteArchive, type InputSpec } from '../src/archive/site-archive';
import { scanCommand } from '../src/commands/scan';

const SPEC: InputSpec = { backbone: 'small', inputSize: 16, maxSlices: 4 };

// A whole second, which utimes sets exactly (a Date carries no sub-millisecond part).
const FIXED_TIME = new Date('2024-01-02T03:04:05Z');

// Overwrites a file with zeros of the same size and sets its mtime back to FIXED_TIME, so
// that only a reader of the file, not its size or mtime, can tell it changed.
async function spoil(path: string): Promise<void> {
  const { size } = await stat(path);
  await writeFile(path, Buffer.alloc(size));
  await utimes(path, FIXED_TIME, FIXED_TIME);
}

async function setFixedTimes(dir: string): Promise<void> {
  for (const path of await filesUnder(dir)) await utimes(path, FIXED_TIME, FIXED_TIME);
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
}

async function captureOutput<T>(run: () => Promise<T>): Promise<{ result: T; stdout: string; stderr: string }> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => stdout.push(String(chunk)) > 0);
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => stderr.push(String(chunk)) > 0);
  try {
    return { result: await run(), stdout: stdout.join(''), stderr: stderr.join('') };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe('preprocessed exam cache', () => {
  let work: string;
  let archive: string;
  let cacheDir: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'covnet-cache-'));
    archive = join(work, 'archive');
    cacheDir = join(work, 'cache');
    await writeSyntheticArchive(archive, { exams: 3, seed: 11, rows: 48, slices: 8 });
    await setFixedTimes(archive);
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('serves an unchanged archive without reading DICOM', async () => {
    const first = await (await SiteArchive.open(archive, { cacheDir })).prepare(SPEC);
    expect((await readdir(join(cacheDir, 'preprocessed'))).filter((name) => name.endsWith('.bin'))).toHaveLength(3);

    // Every DICOM file is now unreadable, but has its old size and mtime.
    const dicomFiles = (await filesUnder(archive)).filter((path) => path.endsWith('.dcm'));
    for (const path of dicomFiles) await spoil(path);

    const second = await (await SiteArchive.open(archive, { cacheDir })).prepare(SPEC);
    expect(second.train.map((exam) => exam.examId)).toEqual(first.train.map((exam) => exam.examId));
    for (const [index, exam] of second.train.entries()) expect(exam.input).toEqual(first.train[index].input);
    for (const [index, exam] of second.val.entries()) expect(exam.input).toEqual(first.val[index].input);
  });

  it('reads the exam again when a file changes', async () => {
    const exam = (await SiteArchive.open(archive, { cacheDir })).exams[0];
    const path = (await filesUnder(exam.dir))[0];
    await utimes(path, new Date(), new Date());
    // The spoiled files are read now, so the exam is left out.
    const prepared = await (await SiteArchive.open(archive, { cacheDir })).prepare(SPEC);
    expect(prepared.skipped.map((skipped) => skipped.examId)).toEqual([exam.examId]);
    expect(prepared.skipped[0].reason).toContain(`exam folder ${exam.dir} has no usable axial CT series`);
  });
});

describe('scan of a large archive', () => {
  const FOLDERS = 100;
  const SLICES = 20;
  let work: string;
  let archive: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'covnet-big-scan-'));
    archive = join(work, 'archive');
    // One 20-slice 256x256 exam, copied into 100 folders with the SeriesInstanceUID's last four
    // digits replaced by the folder number: 2,000 files of 128 KiB, 100 series.
    const source = join(work, 'source');
    await writeSyntheticArchive(source, { exams: 1, seed: 3, rows: 256, slices: SLICES });
    const sourceDir = join(source, 'exam-0001');
    const names = (await readdir(sourceDir)).sort();
    const originals = await Promise.all(names.map((name) => readFile(join(sourceDir, name))));
    const report = await scanArchive(sourceDir);
    const seriesUid = report.series[0].seriesInstanceUID;
    for (let folder = 0; folder < FOLDERS; folder++) {
      const dir = join(archive, `folder-${folder}`);
      await mkdir(dir, { recursive: true });
      const newUid = `${seriesUid.slice(0, -4)}${String(folder).padStart(4, '0')}`;
      for (const [index, bytes] of originals.entries()) {
        const copy = Buffer.from(bytes);
        let at = copy.indexOf(seriesUid, 0, 'latin1');
        while (at >= 0) {
          copy.write(newUid, at, 'latin1');
          at = copy.indexOf(seriesUid, at + 1, 'latin1');
        }
        await writeFile(join(dir, names[index]), copy);
      }
    }
    await setFixedTimes(archive);
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('keeps memory far below the archive size', async () => {
    const usage = () => {
      const { heapUsed, arrayBuffers } = process.memoryUsage();
      return heapUsed + arrayBuffers;
    };
    const before = usage();
    let peak = before;
    const report = await scanArchive(archive, { onProgress: () => (peak = Math.max(peak, usage())) });
    expect(report.series).toHaveLength(FOLDERS);
    // The files hold 250 MiB of pixels and their HU volumes would take 500 MiB.
    expect(peak - before).toBeLessThan(128 * 1024 ** 2);
  });

  it('reports progress on stderr and rescans from the index', async () => {
    const cacheDir = join(work, 'cache');
    const firstStarted = performance.now();
    const first = await captureOutput(() => scanCommand([archive, '--cache-dir', cacheDir]));
    const firstMs = performance.now() - firstStarted;
    expect(first.result).toBe(0);
    // Not a terminal, so plain lines at each quarter and at the end.
    expect(first.stderr).toContain('scan: 500/2000 (25%)');
    expect(first.stderr).toContain('scan: 2000/2000 files in ');
    expect(first.stdout).toContain(`${FOLDERS} series, 0 series rejected, 0 files skipped`);

    for (const path of await filesUnder(archive)) await spoil(path);
    const secondStarted = performance.now();
    const second = await captureOutput(() => scanCommand([archive, '--cache-dir', cacheDir]));
    const secondMs = performance.now() - secondStarted;
    expect(second.stdout).toBe(first.stdout);
    expect(secondMs).toBeLessThan(firstMs);
  });

  it('stores one entry per scanned file', async () => {
    const index = ScanIndex.inMemory();
    await scanArchive(join(archive, 'folder-0'), { index });
    expect(index.size).toBe(SLICES);
  });
});
