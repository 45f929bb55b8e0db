/** A rectangle in pixel coordinates of a slice; it may extend past the image. */
export interface CropBox {
  row0: number;
  col0: number;
  height: number;
  width: number;
}

/**
 * Resamples a rectangle of one slice to size x size with bilinear interpolation, mapping
 * pixel centres onto pixel centres. Points inside the image extent are clamped to the edge
 * pixels; points beyond it take the value `outside`.
 */
export function resampleBilinear(
  source: Float32Array | Uint8Array,
  offset: number,
  rows: number,
  columns: number,
  box: CropBox,
  size: number,
  outside: number,
  target: Float32Array,
  targetOffset: number,
): void {
  const rowStep = box.height / size;
  const colStep = box.width / size;

  for (let outRow = 0; outRow < size; outRow++) {
    const y = box.row0 + (outRow + 0.5) * rowStep - 0.5;
    for (let outCol = 0; outCol < size; outCol++) {
      const x = box.col0 + (outCol + 0.5) * colStep - 0.5;
      const index = targetOffset + outRow * size + outCol;
      if (y < -0.5 || y > rows - 0.5 || x < -0.5 || x > columns - 0.5) {
        target[index] = outside;
        continue;
      }

      const yc = Math.min(rows - 1, Math.max(0, y));
      const xc = Math.min(columns - 1, Math.max(0, x));
      const y0 = Math.floor(yc);
      const x0 = Math.floor(xc);
      const y1 = Math.min(rows - 1, y0 + 1);
      const x1 = Math.min(columns - 1, x0 + 1);
      const fy = yc - y0;
      const fx = xc - x0;
      const top = source[offset + y0 * columns + x0] * (1 - fx) + source[offset + y0 * columns + x1] * fx;
      const bottom = source[offset + y1 * columns + x0] * (1 - fx) + source[offset + y1 * columns + x1] * fx;
      target[index] = top * (1 - fy) + bottom * fy;
    }
  }
}
