import { readdir, readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { computeLungMask, loadSeriesVolume, lungCropBox, scanArchive, writeSyntheticArchive, type LungMask, type Volume } from '@covnet/imaging';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { scanCommand } from '../src/commands/scan';

describe('scan --preview', () => {
  let work: string;
  let archive: string;
  let out: string;
  let stdout: string;
  let volume: Volume;
  let lungMask: LungMask;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'covnet-preview-'));
    archive = join(work, 'archive');
    out = join(work, 'previews');
    await writeSyntheticArchive(archive, { exams: 1, seed: 5, rows: 64, slices: 10 });

    const chunks: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      chunks.push(String(chunk));
      return true;
    });
    try {
      expect(await scanCommand([archive, '--preview', out, '--cache-dir', join(work, 'cache')])).toBe(0);
    } finally {
      spy.mockRestore();
    }
    stdout = chunks.join('');

    const report = await scanArchive(archive);
    volume = await loadSeriesVolume(report.series[0].files);
    lungMask = computeLungMask(volume);
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('writes three PNGs of the series', async () => {
    const files = (await readdir(out)).sort();
    expect(files).toHaveLength(3);
    for (const name of files) expect(name).toMatch(/^study-001-slice-\d{3}\.png$/);
    expect(stdout).toContain(`preview ${join(out, files[0])}`);
  });

  it('draws the outline on the mask boundary only', async () => {
    const { crop } = lungCropBox(volume, lungMask);
    const onBox = (row: number, col: number) => {
      const top = Math.round(crop.row0);
      const left = Math.round(crop.col0);
      const bottom = Math.round(crop.row0 + crop.height) - 1;
      const right = Math.round(crop.col0 + crop.width) - 1;
      return ((row === top || row === bottom) && col >= left && col <= right) || ((col === left || col === right) && row >= top && row <= bottom);
    };

    for (const name of await readdir(out)) {
      const slice = Number(/slice-(\d+)/.exec(name)![1]);
      const png = PNG.sync.read(await readFile(join(out, name)));
      expect([png.width, png.height]).toEqual([volume.columns, volume.rows]);

      const offset = slice * volume.rows * volume.columns;
      const inMask = (row: number, col: number) => row >= 0 && row < volume.rows && col >= 0 && col < volume.columns && lungMask.mask[offset + row * volume.columns + col] === 1;
      let red = 0;
      let boundary = 0;
      for (let row = 0; row < volume.rows; row++) {
        for (let col = 0; col < volume.columns; col++) {
          const at = (row * volume.columns + col) * 4;
          const isRed = png.data[at] === 255 && png.data[at + 1] === 0 && png.data[at + 2] === 0;
          const isBoundary = inMask(row, col) && (!inMask(row - 1, col) || !inMask(row + 1, col) || !inMask(row, col - 1) || !inMask(row, col + 1));
          if (isRed) red += 1;
          if (isBoundary && !onBox(row, col)) boundary += 1;
          if (isRed) expect(isBoundary, `red pixel at row ${row}, column ${col} of ${name}`).toBe(true);
          if (isBoundary && !onBox(row, col)) expect(isRed, `boundary pixel at row ${row}, column ${col} of ${name}`).toBe(true);
        }
      }
      expect(red).toBeGreaterThan(0);
      expect(red).toBe(boundary);
    }
  });

  it('draws the crop box in green', async () => {
    const name = (await readdir(out))[0];
    const png = PNG.sync.read(await readFile(join(out, name)));
    const { crop } = lungCropBox(volume, lungMask);
    const row = Math.round(crop.row0);
    const col = Math.round(crop.col0 + crop.width / 2);
    const at = (row * png.width + col) * 4;
    expect([png.data[at], png.data[at + 1], png.data[at + 2]]).toEqual([0, 255, 0]);
  });
});
