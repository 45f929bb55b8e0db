import type { Volume } from '../series/volume';

/** Options of computeLungMask. */
export interface LungMaskOptions {
  /** Voxels below this HU count as air or lung (default -400). */
  thresholdHu?: number;
  /** A second component counts as a lung only if it has at least this fraction of the largest one's voxels (default 0.1). */
  minSecondLungFraction?: number;
}

/** A binary lung mask with the number of lungs (connected components) it kept. */
export interface LungMask {
  mask: Uint8Array;
  lungs: number;
  /** Voxels in each kept component, largest first. */
  componentVoxels: number[];
}

/**
 * Segments the lungs with a simple threshold pipeline. Voxels below the threshold, minus the
 * air connected to the border of each slice, are split into 3-D (6-connected) components.
 * The two largest are kept, and then holes (vessels, nodules, consolidation fully surrounded
 * by lung) are filled slice by slice.
 * Limitation: lungs joined through the airways form one component, which only widens the
 * crop a little. A consolidation that reaches the pleura stays outside the mask, so the crop
 * can cut it when it lies at the edge of the lung.
 */
export function computeLungMask(volume: Volume, opts: LungMaskOptions = {}): LungMask {
  const threshold = opts.thresholdHu ?? -400;
  const minSecond = opts.minSecondLungFraction ?? 0.1;
  const { slices, rows, columns, hu } = volume;
  const sliceSize = rows * columns;

  const candidate = new Uint8Array(hu.length);
  for (let i = 0; i < hu.length; i++) candidate[i] = hu[i] < threshold ? 1 : 0;
  for (let k = 0; k < slices; k++) clearBorderConnected(candidate, k * sliceSize, rows, columns);

  const { labels, sizes } = labelComponents3d(candidate, slices, rows, columns);
  const ranked = sizes.map((size, label) => ({ label, size })).filter((entry) => entry.label > 0 && entry.size > 0).sort((a, b) => b.size - a.size);
  const keptComponents = ranked.slice(0, 2).filter((entry, index) => index === 0 || entry.size >= minSecond * ranked[0].size);
  const keptLabels = new Set(keptComponents.map((entry) => entry.label));

  const mask = new Uint8Array(hu.length);
  for (let i = 0; i < hu.length; i++) if (keptLabels.has(labels[i])) mask[i] = 1;
  for (let k = 0; k < slices; k++) fillHoles(mask, k * sliceSize, rows, columns);

  return { mask, lungs: keptComponents.length, componentVoxels: keptComponents.map((entry) => entry.size) };
}

// Clears every set pixel of one slice that connects (4-connected) to the slice border.
function clearBorderConnected(mask: Uint8Array, offset: number, rows: number, columns: number): void {
  const stack: number[] = [];
  const push = (row: number, col: number) => {
    const index = offset + row * columns + col;
    if (mask[index] === 1) {
      mask[index] = 0;
      stack.push(row * columns + col);
    }
  };
  for (let col = 0; col < columns; col++) {
    push(0, col);
    push(rows - 1, col);
  }
  for (let row = 0; row < rows; row++) {
    push(row, 0);
    push(row, columns - 1);
  }
  while (stack.length > 0) {
    const pixel = stack.pop() as number;
    const row = Math.floor(pixel / columns);
    const col = pixel % columns;
    if (row > 0) push(row - 1, col);
    if (row < rows - 1) push(row + 1, col);
    if (col > 0) push(row, col - 1);
    if (col < columns - 1) push(row, col + 1);
  }
}

// Sets every unset pixel of one slice that the border cannot reach through unset pixels.
function fillHoles(mask: Uint8Array, offset: number, rows: number, columns: number): void {
  const outside = new Uint8Array(rows * columns);
  const stack: number[] = [];
  const visit = (row: number, col: number) => {
    const pixel = row * columns + col;
    if (outside[pixel] === 0 && mask[offset + pixel] === 0) {
      outside[pixel] = 1;
      stack.push(pixel);
    }
  };
  for (let col = 0; col < columns; col++) {
    visit(0, col);
    visit(rows - 1, col);
  }
  for (let row = 0; row < rows; row++) {
    visit(row, 0);
    visit(row, columns - 1);
  }
  while (stack.length > 0) {
    const pixel = stack.pop() as number;
    const row = Math.floor(pixel / columns);
    const col = pixel % columns;
    if (row > 0) visit(row - 1, col);
    if (row < rows - 1) visit(row + 1, col);
    if (col > 0) visit(row, col - 1);
    if (col < columns - 1) visit(row, col + 1);
  }
  for (let pixel = 0; pixel < rows * columns; pixel++) {
    if (outside[pixel] === 0) mask[offset + pixel] = 1;
  }
}

// Labels 6-connected components of set voxels; label 0 is background.
function labelComponents3d(mask: Uint8Array, slices: number, rows: number, columns: number): { labels: Int32Array; sizes: number[] } {
  const labels = new Int32Array(mask.length);
  const sizes = [0];
  const sliceSize = rows * columns;
  const queue = new Int32Array(mask.length);

  for (let seed = 0; seed < mask.length; seed++) {
    if (mask[seed] === 0 || labels[seed] !== 0) continue;
    const label = sizes.length;
    let head = 0;
    let tail = 0;
    queue[tail++] = seed;
    labels[seed] = label;
    while (head < tail) {
      const index = queue[head++];
      const k = Math.floor(index / sliceSize);
      const inSlice = index - k * sliceSize;
      const row = Math.floor(inSlice / columns);
      const col = inSlice - row * columns;
      const neighbours = [
        col > 0 ? index - 1 : -1,
        col < columns - 1 ? index + 1 : -1,
        row > 0 ? index - columns : -1,
        row < rows - 1 ? index + columns : -1,
        k > 0 ? index - sliceSize : -1,
        k < slices - 1 ? index + sliceSize : -1,
      ];
      for (const neighbour of neighbours) {
        if (neighbour >= 0 && mask[neighbour] === 1 && labels[neighbour] === 0) {
          labels[neighbour] = label;
          queue[tail++] = neighbour;
        }
      }
    }
    sizes.push(tail);
  }
  return { labels, sizes };
}
