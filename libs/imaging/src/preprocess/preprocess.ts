import type { Volume } from '../series/volume';
import { computeLungMask, type LungMask } from './lung-mask';
import { resampleBilinear, type CropBox } from './resample';

/** Model input: `slices` images of size x size, slice-major, values in [0, 1]. */
export interface ModelInput {
  slices: number;
  size: number;
  data: Float32Array;
  /** Region of each source slice that was resampled (rows and columns of the source). */
  crop?: CropBox;
  /** Indices of the source slices that were kept, in order. */
  sliceIndices?: number[];
  /** Source of the crop box: the lungs, the body when no lungs were found, or the whole image. */
  cropSource?: 'lungs' | 'body' | 'image';
}

export interface PreprocessOptions {
  /** Output rows and columns, e.g. 224 for COVNet. */
  size: number;
  /** Keep at most this many evenly spaced slices (default: all). */
  maxSlices?: number;
  /** Margin around the lung bounding box, as a fraction of its larger side (default 0.1). */
  marginFraction?: number;
  /** Lung window level and width in HU (default -600 and 1500). */
  windowLevel?: number;
  windowWidth?: number;
}

/**
 * Version of the preprocessing pipeline (mask, crop, window, resampling). Caches of model input
 * must include it in their key; raise it whenever a change alters the output for the same volume.
 */
export const PREPROCESS_VERSION = 2;

// Below this many voxels the lung mask is treated as empty and the body box is used.
const MIN_LUNG_VOXELS = 50;
const BODY_THRESHOLD_HU = -500;

/**
 * Turns an HU volume into COVNet input in five steps. A lung mask is computed, and the crop
 * is the square around the lungs' bounding box over the whole volume, with a margin (the
 * body's box when no lungs are found). Then the lung window (level -600, width 1500) maps HU
 * to [0, 1], bilinear resampling gives size x size, and at most maxSlices evenly spaced
 * slices are kept.
 * @throws RangeError for a size or maxSlices below 1.
 */
export function preprocessVolume(volume: Volume, opts: PreprocessOptions): ModelInput {
  if (!Number.isInteger(opts.size) || opts.size < 1) throw new RangeError(`size must be a positive integer, got ${opts.size}`);
  if (opts.maxSlices !== undefined && (!Number.isInteger(opts.maxSlices) || opts.maxSlices < 1)) {
    throw new RangeError(`maxSlices must be a positive integer, got ${opts.maxSlices}`);
  }

  const level = opts.windowLevel ?? -600;
  const width = opts.windowWidth ?? 1500;
  const { crop, source } = lungCropBox(volume, computeLungMask(volume), opts.marginFraction ?? 0.1);
  const sliceIndices = selectSlices(volume.slices, opts.maxSlices ?? volume.slices);

  const size = opts.size;
  const sliceSize = volume.rows * volume.columns;
  const data = new Float32Array(sliceIndices.length * size * size);
  // Everything beyond the image is treated as air.
  const airHu = -1024;
  sliceIndices.forEach((sourceSlice, outSlice) => {
    resampleBilinear(volume.hu, sourceSlice * sliceSize, volume.rows, volume.columns, crop, size, airHu, data, outSlice * size * size);
  });

  const low = level - width / 2;
  for (let i = 0; i < data.length; i++) {
    const value = (data[i] - low) / width;
    data[i] = Math.min(1, Math.max(0, value));
  }

  return { slices: sliceIndices.length, size, data, crop, sliceIndices, cropSource: source };
}

/**
 * Turns one 8-bit grayscale image that is already windowed (e.g. a PNG or JPEG rendering of
 * a CT slice) into a one-slice model input: scaled from [0, 255] to [0, 1], resized to size x size.
 * @throws RangeError when the pixel count does not match width x height, or size is below 1.
 */
export function preprocessImage2D(gray: Float32Array | Uint8Array, width: number, height: number, size: number): ModelInput {
  if (gray.length !== width * height) {
    throw new RangeError(`image has ${gray.length} pixels, expected ${width}x${height} = ${width * height}`);
  }
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`size must be a positive integer, got ${size}`);

  const data = new Float32Array(size * size);
  const crop: CropBox = { row0: 0, col0: 0, height, width };
  resampleBilinear(gray, 0, height, width, crop, size, 0, data, 0);
  for (let i = 0; i < data.length; i++) data[i] = Math.min(1, Math.max(0, data[i] / 255));
  return { slices: 1, size, data, crop, sliceIndices: [0], cropSource: 'image' };
}

/** Picks `count` evenly spaced slice indices out of `total`, first and last included; all of them when count >= total. */
export function selectSlices(total: number, count: number): number[] {
  if (count >= total) return Array.from({ length: total }, (_, index) => index);
  if (count === 1) return [Math.floor((total - 1) / 2)];
  return Array.from({ length: count }, (_, index) => Math.round((index * (total - 1)) / (count - 1)));
}

/**
 * Chooses the square crop of a volume around the lungs' in-plane bounding box over all slices,
 * with a margin of marginFraction of the box's larger side. When the lung mask has fewer than
 * 50 voxels, the box is the body's (voxels above -500 HU), and without a body it is the whole image.
 */
export function lungCropBox(volume: Volume, lungMask: LungMask, marginFraction = 0.1): { crop: CropBox; source: 'lungs' | 'body' | 'image' } {
  const { mask } = lungMask;
  let box = boundingBox(volume, (index) => mask[index] === 1, MIN_LUNG_VOXELS);
  let source: 'lungs' | 'body' | 'image' = 'lungs';
  if (box === undefined) {
    box = boundingBox(volume, (index) => volume.hu[index] > BODY_THRESHOLD_HU, 1);
    source = 'body';
  }
  if (box === undefined) {
    return { crop: { row0: 0, col0: 0, height: volume.rows, width: volume.columns }, source: 'image' };
  }

  // A square crop keeps the aspect ratio when it is resized to size x size.
  const side = Math.max(box.height, box.width) * (1 + 2 * marginFraction);
  const centreRow = box.row0 + box.height / 2;
  const centreCol = box.col0 + box.width / 2;
  return { crop: { row0: centreRow - side / 2, col0: centreCol - side / 2, height: side, width: side }, source };
}

// In-plane bounding box, over all slices, of the voxels that pass the test; undefined below minVoxels.
function boundingBox(volume: Volume, test: (index: number) => boolean, minVoxels: number): CropBox | undefined {
  const { slices, rows, columns } = volume;
  let minRow = rows;
  let maxRow = -1;
  let minCol = columns;
  let maxCol = -1;
  let count = 0;
  for (let k = 0; k < slices; k++) {
    for (let row = 0; row < rows; row++) {
      for (let col = 0; col < columns; col++) {
        if (!test((k * rows + row) * columns + col)) continue;
        count++;
        if (row < minRow) minRow = row;
        if (row > maxRow) maxRow = row;
        if (col < minCol) minCol = col;
        if (col > maxCol) maxCol = col;
      }
    }
  }
  if (count < minVoxels) return undefined;
  return { row0: minRow, col0: minCol, height: maxRow - minRow + 1, width: maxCol - minCol + 1 };
}
