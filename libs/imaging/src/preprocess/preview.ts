import type { Volume } from '../series/volume';
import type { LungMask } from './lung-mask';
import type { CropBox } from './resample';

/** An RGBA image, 8 bits per channel, row-major. */
export interface PreviewImage {
  width: number;
  height: number;
  rgba: Uint8Array;
}

/** Colour of the lung mask outline: red. */
export const OUTLINE_RGB = [255, 0, 0] as const;
/** Colour of the crop box: green. */
export const CROP_RGB = [0, 255, 0] as const;

/**
 * Renders one slice at its own resolution, so that a site admin can check what the model will
 * see. The slice is drawn in the lung window (level -600, width 1500 HU) in gray. The outline
 * of the lung mask is red: mask pixels with a 4-neighbour outside the mask or on the image
 * edge. The crop box is drawn last, in green.
 * @throws RangeError for a slice index outside the volume.
 */
export function renderLungPreview(volume: Volume, lungMask: LungMask, crop: CropBox, slice: number, windowLevel = -600, windowWidth = 1500): PreviewImage {
  if (!Number.isInteger(slice) || slice < 0 || slice >= volume.slices) throw new RangeError(`slice ${slice} is outside 0..${volume.slices - 1}`);
  const { rows, columns } = volume;
  const offset = slice * rows * columns;
  const rgba = new Uint8Array(rows * columns * 4);
  const low = windowLevel - windowWidth / 2;

  for (let pixel = 0; pixel < rows * columns; pixel++) {
    const gray = Math.round(255 * Math.min(1, Math.max(0, (volume.hu[offset + pixel] - low) / windowWidth)));
    rgba.set([gray, gray, gray, 255], pixel * 4);
  }

  const mask = lungMask.mask;
  for (let row = 0; row < rows; row++) {
    for (let col = 0; col < columns; col++) {
      const pixel = row * columns + col;
      if (mask[offset + pixel] === 0) continue;
      const edge =
        row === 0 || row === rows - 1 || col === 0 || col === columns - 1 ||
        mask[offset + pixel - 1] === 0 || mask[offset + pixel + 1] === 0 ||
        mask[offset + pixel - columns] === 0 || mask[offset + pixel + columns] === 0;
      if (edge) rgba.set(OUTLINE_RGB, pixel * 4);
    }
  }

  drawRectangle(rgba, rows, columns, crop);
  return { width: columns, height: rows, rgba };
}

// Draws the crop box's border, clipped to the image; the box may extend past the image.
function drawRectangle(rgba: Uint8Array, rows: number, columns: number, box: CropBox): void {
  const top = Math.round(box.row0);
  const left = Math.round(box.col0);
  const bottom = Math.round(box.row0 + box.height) - 1;
  const right = Math.round(box.col0 + box.width) - 1;
  const paint = (row: number, col: number) => {
    if (row >= 0 && row < rows && col >= 0 && col < columns) rgba.set(CROP_RGB, (row * columns + col) * 4);
  };
  for (let col = left; col <= right; col++) {
    paint(top, col);
    paint(bottom, col);
  }
  for (let row = top; row <= bottom; row++) {
    paint(row, left);
    paint(row, right);
  }
}
