import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageReadError, loadImageFile } from '../src';
import { sharedDataDir } from './shared-data';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'covnet-images-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadImageFile', () => {
  describe('when reading a colour PNG', () => {
    it('converts with BT.601 luma weights', async () => {
      const png = new PNG({ width: 2, height: 1 });
      png.data.set([255, 0, 0, 255, 10, 20, 30, 0]);
      const path = join(dir, 'colour.png');
      await writeFile(path, PNG.sync.write(png));

      const image = await loadImageFile(path);
      expect(image.width).toBe(2);
      expect(image.height).toBe(1);
      // 0.299 * 255 = 76.245; 0.299 * 10 + 0.587 * 20 + 0.114 * 30 = 18.15 (alpha 0 is ignored).
      expect(image.gray[0]).toBeCloseTo(76.245, 3);
      expect(image.gray[1]).toBeCloseTo(18.15, 3);
    });
  });

  describe('when reading a JPEG without extension', () => {
    it('decodes by signature', async () => {
      const width = 16;
      const height = 8;
      const data = Buffer.alloc(width * height * 4);
      for (let i = 0; i < width * height; i++) data.set([128, 128, 128, 255], i * 4);
      const path = join(dir, 'gray-jpeg');
      await writeFile(path, jpeg.encode({ data, width, height }, 95).data);

      const image = await loadImageFile(path);
      expect(image.width).toBe(width);
      expect(image.height).toBe(height);
      for (const value of image.gray) expect(Math.abs(value - 128)).toBeLessThanOrEqual(2);
    });
  });

  describe('when the file is not an image', () => {
    it('names the file', async () => {
      const path = join(dir, 'notes.png');
      await writeFile(path, 'not an image');
      const error = await loadImageFile(path).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ImageReadError);
      expect((error as Error).message).toBe(`${path}: not a PNG or JPEG file (unknown signature)`);
    });

    it('names a corrupt PNG', async () => {
      const path = join(dir, 'broken.png');
      await writeFile(path, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0]));
      await expect(loadImageFile(path)).rejects.toThrow(`${path}: decoding failed`);
    });
  });

  const ucsd = sharedDataDir('covid-ct-ucsd');
  describe.skipIf(!ucsd.present)('when reading a real COVID-CT PNG', () => {
    it('matches the IHDR size', async () => {
      const path = join(ucsd.dir, 'CT_COVID', '2020.01.24.919183-p27-132.png');
      const bytes = await readFile(path);
      // IHDR width and height are the big-endian words at bytes 16 and 20 of every PNG.
      const image = await loadImageFile(path);
      expect(image.width).toBe(bytes.readUInt32BE(16));
      expect(image.height).toBe(bytes.readUInt32BE(20));
      expect(image.gray.length).toBe(image.width * image.height);
    });
  });
});
