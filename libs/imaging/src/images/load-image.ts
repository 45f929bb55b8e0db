import { readFile } from 'node:fs/promises';
import * as jpeg from 'jpeg-js';
import { PNG } from 'pngjs';

/** A grayscale image with values in [0, 255], row-major. */
export interface GrayImage {
  width: number;
  height: number;
  gray: Float32Array;
}

/** An image file that cannot be decoded, naming the file and the reason. */
export class ImageReadError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: ${reason}`);
    this.name = 'ImageReadError';
  }
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47];
const JPEG_SIGNATURE = [0xff, 0xd8, 0xff];
// jpeg-js refuses images needing more than this much memory; large enough for any CT rendering.
const JPEG_MAX_MEMORY_MB = 512;

/**
 * Reads a PNG or JPEG file (chosen by its signature, not its extension) as grayscale
 * [0, 255]. Colour is converted with the ITU-R BT.601 luma weights; alpha is ignored.
 * 16-bit PNGs are scaled down to 8 bits by pngjs.
 * @throws ImageReadError when the file is neither PNG nor JPEG or cannot be decoded.
 */
export async function loadImageFile(path: string): Promise<GrayImage> {
  const bytes = await readFile(path);
  const startsWith = (signature: number[]) => signature.every((value, index) => bytes[index] === value);

  let rgba: Uint8Array;
  let width: number;
  let height: number;
  try {
    if (startsWith(PNG_SIGNATURE)) {
      const png = PNG.sync.read(bytes);
      ({ width, height } = png);
      rgba = png.data;
    } else if (startsWith(JPEG_SIGNATURE)) {
      const decoded = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: JPEG_MAX_MEMORY_MB });
      ({ width, height } = decoded);
      rgba = decoded.data;
    } else {
      throw new ImageReadError(path, 'not a PNG or JPEG file (unknown signature)');
    }
  } catch (error) {
    if (error instanceof ImageReadError) throw error;
    throw new ImageReadError(path, `decoding failed: ${error instanceof Error ? error.message : String(error)}`);
  }

  const gray = new Float32Array(width * height);
  for (let i = 0; i < gray.length; i++) {
    gray[i] = 0.299 * rgba[i * 4] + 0.587 * rgba[i * 4 + 1] + 0.114 * rgba[i * 4 + 2];
  }
  return { width, height, gray };
}
