import type { Volume } from '../series/volume';
import { findAirways, type AirwayOptions } from './airways';
import { dilate2d, fillHoles2d, labelComponents2d, labelComponents3d } from './components';

/** Options of computeLungMask. */
export interface LungMaskOptions {
  /** Voxels below this HU count as air or lung (default -400). */
  thresholdHu?: number;
  /** Voxels above this HU count as the patient's body (default -500). */
  bodyHu?: number;
  /** A second component counts as a lung only if it has at least this fraction of the largest one's voxels (default 0.1). */
  minSecondLungFraction?: number;
  /** Pixels removed around the airways in each slice, to cut the airway walls too (default 2). */
  airwayMarginPixels?: number;
  /** Options of the airway search; `false` keeps the airways in the mask. */
  airways?: AirwayOptions | false;
}

/** A binary lung mask with the number of lungs (connected components) it kept. */
export interface LungMask {
  mask: Uint8Array;
  lungs: number;
  /** Voxels in each kept component, largest first. */
  componentVoxels: number[];
  /** Voxels of trachea and main bronchi removed from the mask (0 when no trachea was found). */
  airwayVoxels: number;
}

/**
 * Segments the lungs with a threshold pipeline that needs no trained weights:
 * 1. The body is, per slice, the largest 4-connected region above bodyHu with its holes
 *    filled, so air around the patient and inside the table is outside it.
 * 2. Lung candidates are the voxels inside the body below thresholdHu.
 * 3. The trachea and main bronchi (findAirways) are removed with a margin of a few pixels,
 *    because through them the two lungs form one component.
 * 4. The two largest 6-connected 3-D components are kept, and holes (vessels, nodules,
 *    consolidation surrounded by lung) are filled slice by slice.
 * Limitation: lungs that touch along the anterior junction line at the slice thickness
 * stay one component (`lungs` is 1), which only widens the crop a little. A consolidation
 * that reaches the pleura stays outside the mask, so the crop can cut it when it lies at
 * the edge of the lung.
 */
export function computeLungMask(volume: Volume, opts: LungMaskOptions = {}): LungMask {
  const threshold = opts.thresholdHu ?? -400;
  const minSecond = opts.minSecondLungFraction ?? 0.1;
  const { slices, rows, columns, hu } = volume;
  const sliceSize = rows * columns;

  const body = bodyMask(volume, opts.bodyHu ?? -500);
  const candidate = new Uint8Array(hu.length);
  for (let i = 0; i < hu.length; i++) candidate[i] = hu[i] < threshold && body[i] === 1 ? 1 : 0;

  let airwayVoxels = 0;
  if (opts.airways !== false) {
    const airways = findAirways(volume, body, opts.airways ?? {});
    airwayVoxels = airways.voxels;
    const margin = opts.airwayMarginPixels ?? 2;
    for (let k = 0; k < slices; k++) dilate2d(airways.mask, k * sliceSize, rows, columns, margin);
    for (let i = 0; i < hu.length; i++) if (airways.mask[i] === 1) candidate[i] = 0;
  }

  let components = largestComponents(candidate, volume, minSecond);
  if (components.kept.length === 1) {
    // One component: the lungs still touch somewhere. Cut each slice where one region spans
    // both sides of the body at its narrowest column near the middle, then label again.
    const cuts = cutAcrossMidline(candidate, body, volume);
    if (cuts > 0) {
      // The junction shifts by a few columns from slice to slice, so the cut halves can still
      // touch through the slice above or below. Where they do, the left-side voxel is removed.
      separateSidesAcrossSlices(candidate, body, components.labels, components.kept[0].label, volume);
      components = largestComponents(candidate, volume, minSecond);
    }
  }
  const { labels, kept } = components;
  const keptLabels = kept.map((entry) => entry.label);

  const mask = new Uint8Array(hu.length);
  for (let i = 0; i < hu.length; i++) if (labels[i] !== 0 && (labels[i] === keptLabels[0] || labels[i] === keptLabels[1])) mask[i] = 1;
  for (let k = 0; k < slices; k++) fillHoles2d(mask, k * sliceSize, rows, columns);

  return { mask, lungs: kept.length, componentVoxels: kept.map((entry) => entry.size), airwayVoxels };
}

// The largest 3-D component, and the second largest when it has at least minSecond of the largest's voxels.
function largestComponents(candidate: Uint8Array, volume: Volume, minSecond: number): { labels: Int32Array; kept: { label: number; size: number }[] } {
  const { labels, sizes } = labelComponents3d(candidate, volume.slices, volume.rows, volume.columns);
  const ranked = sizes
    .map((size, label) => ({ label, size }))
    .filter((entry) => entry.label > 0 && entry.size > 0)
    .sort((a, b) => b.size - a.size);
  const kept = ranked.slice(0, 2).filter((entry, index) => index === 0 || entry.size >= minSecond * ranked[0].size);
  return { labels, kept };
}

// Fraction of the body's width, each side of its middle, searched for the junction of the lungs.
const JUNCTION_SEARCH_FRACTION = 0.15;
// A region is cut only where it is at most this fraction of the image rows thick, so that a
// single large lung is not sliced in two.
const MAX_JUNCTION_FRACTION = 0.15;

// Cuts, in each slice, every candidate region that has pixels on both sides of the body's middle
// column, along its thinnest column near that middle (two pixels wide). Both the lungs meeting
// at the anterior junction and the small airway pieces that bridge them near the carina are
// such regions. Returns the number of regions cut.
function cutAcrossMidline(candidate: Uint8Array, body: Uint8Array, volume: Volume): number {
  const { slices, rows, columns } = volume;
  const sliceSize = rows * columns;
  let cuts = 0;
  for (let k = 0; k < slices; k++) {
    const offset = k * sliceSize;
    let bodyMin = columns;
    let bodyMax = -1;
    for (let pixel = 0; pixel < sliceSize; pixel++) {
      if (body[offset + pixel] === 0) continue;
      const col = pixel % columns;
      if (col < bodyMin) bodyMin = col;
      if (col > bodyMax) bodyMax = col;
    }
    if (bodyMax < 0) continue;
    const middle = Math.round((bodyMin + bodyMax) / 2);
    const reach = Math.round(JUNCTION_SEARCH_FRACTION * (bodyMax - bodyMin + 1));

    const { labels, sizes } = labelComponents2d(candidate, offset, rows, columns);
    const minColumn = new Int32Array(sizes.length).fill(columns);
    const maxColumn = new Int32Array(sizes.length).fill(-1);
    for (let pixel = 0; pixel < sliceSize; pixel++) {
      const label = labels[pixel];
      if (label === 0) continue;
      const col = pixel % columns;
      if (col < minColumn[label]) minColumn[label] = col;
      if (col > maxColumn[label]) maxColumn[label] = col;
    }

    for (let label = 1; label < sizes.length; label++) {
      if (minColumn[label] >= middle || maxColumn[label] <= middle) continue;
      // Cut strictly inside the region's extent, so that the cut separates it.
      const from = Math.max(middle - reach, minColumn[label] + 1);
      const to = Math.min(middle + reach, maxColumn[label] - 2);
      let bestColumn = -1;
      let bestCount = Infinity;
      for (let col = from; col <= to; col++) {
        let count = 0;
        for (let row = 0; row < rows; row++) if (labels[row * columns + col] === label) count++;
        if (count < bestCount) {
          bestCount = count;
          bestColumn = col;
        }
      }
      if (bestColumn < 0 || bestCount > MAX_JUNCTION_FRACTION * rows) continue;
      for (let row = 0; row < rows; row++) {
        for (const col of [bestColumn, bestColumn + 1]) {
          if (labels[row * columns + col] === label) candidate[offset + row * columns + col] = 0;
        }
      }
      cuts += 1;
    }
  }
  return cuts;
}

// Assigns each 2-D region of the component, per slice, to the side of the body's middle where its
// centroid lies. Then every left-side voxel that touches a right-side voxel in the neighbouring
// slice is cleared.
function separateSidesAcrossSlices(candidate: Uint8Array, body: Uint8Array, labels3d: Int32Array, label3d: number, volume: Volume): void {
  const { slices, rows, columns } = volume;
  const sliceSize = rows * columns;
  const side = new Uint8Array(candidate.length);
  const inComponent = new Uint8Array(sliceSize);
  for (let k = 0; k < slices; k++) {
    const offset = k * sliceSize;
    let bodyMin = columns;
    let bodyMax = -1;
    for (let pixel = 0; pixel < sliceSize; pixel++) {
      inComponent[pixel] = candidate[offset + pixel] === 1 && labels3d[offset + pixel] === label3d ? 1 : 0;
      if (body[offset + pixel] === 0) continue;
      const col = pixel % columns;
      if (col < bodyMin) bodyMin = col;
      if (col > bodyMax) bodyMax = col;
    }
    const middle = (bodyMin + bodyMax) / 2;
    const { labels, sizes } = labelComponents2d(inComponent, 0, rows, columns);
    const columnSums = new Float64Array(sizes.length);
    for (let pixel = 0; pixel < sliceSize; pixel++) if (labels[pixel] > 0) columnSums[labels[pixel]] += pixel % columns;
    for (let pixel = 0; pixel < sliceSize; pixel++) {
      const label = labels[pixel];
      if (label > 0) side[offset + pixel] = columnSums[label] / sizes[label] < middle ? 1 : 2;
    }
  }
  for (let index = 0; index < candidate.length; index++) {
    if (side[index] !== 1) continue;
    const below = index >= sliceSize && side[index - sliceSize] === 2;
    const above = index < candidate.length - sliceSize && side[index + sliceSize] === 2;
    if (below || above) candidate[index] = 0;
  }
}

// Per slice: the largest region above bodyHu, holes filled.
function bodyMask(volume: Volume, bodyHu: number): Uint8Array {
  const { slices, rows, columns, hu } = volume;
  const sliceSize = rows * columns;
  const dense = new Uint8Array(hu.length);
  for (let i = 0; i < hu.length; i++) dense[i] = hu[i] > bodyHu ? 1 : 0;

  const body = new Uint8Array(hu.length);
  for (let k = 0; k < slices; k++) {
    const offset = k * sliceSize;
    const { labels, sizes } = labelComponents2d(dense, offset, rows, columns);
    let largest = 0;
    for (let label = 1; label < sizes.length; label++) if (sizes[label] > sizes[largest]) largest = label;
    if (largest === 0) continue;
    for (let pixel = 0; pixel < sliceSize; pixel++) if (labels[pixel] === largest) body[offset + pixel] = 1;
    fillHoles2d(body, offset, rows, columns);
  }
  return body;
}
