import type { Volume } from '../series/volume';
import { labelComponents2d } from './components';

/** Thresholds of the airway search; areas are in mm², so they do not depend on the pixel spacing. */
export interface AirwayOptions {
  /** Voxels below this HU count as airway lumen (default -900; lung parenchyma is mostly above it). */
  lumenHu?: number;
  /** Area range of a trachea cross-section (default 40 to 900 mm², diameters of about 7 to 34 mm). */
  minTracheaAreaMm2?: number;
  maxTracheaAreaMm2?: number;
  /** Part of the slices, from the superior end, searched for the trachea (default 0.4). */
  searchFraction?: number;
  /**
   * A branch whose area grows by more than this factor from one slice to the next, to more
   * than the largest trachea area, has leaked into the lung and stops (default 2).
   */
  leakGrowth?: number;
}

/** The trachea and main bronchi found by region growing, as a voxel mask. */
export interface Airways {
  mask: Uint8Array;
  voxels: number;
  /** Slice where the trachea was first found, or -1 when none was found. */
  tracheaSlice: number;
}

/**
 * Finds the trachea and the main bronchi. The trachea is the lumen cross-section, in one of
 * the most superior slices, whose area fits a trachea and whose centre is nearest the middle
 * of the body. From there, lumen pixels that overlap the airway of the slice above are grown
 * slice by slice towards the feet. A branch stops where its area jumps by more than leakGrowth
 * to more than a trachea's area, because that is where the lumen opens into lung parenchyma.
 * Assumes slices ascend from feet to head (the last slice is the most superior), which is how
 * an axial series with the usual orientation is ordered.
 * @param inBody voxels inside the patient, so that air around the body is never taken as the trachea.
 */
export function findAirways(volume: Volume, inBody: Uint8Array, opts: AirwayOptions = {}): Airways {
  const lumenHu = opts.lumenHu ?? -900;
  const pixelArea = volume.pixelSpacing[0] * volume.pixelSpacing[1];
  const minArea = (opts.minTracheaAreaMm2 ?? 40) / pixelArea;
  const maxArea = (opts.maxTracheaAreaMm2 ?? 900) / pixelArea;
  const leakGrowth = opts.leakGrowth ?? 2;
  const { slices, rows, columns, hu } = volume;
  const sliceSize = rows * columns;
  const mask = new Uint8Array(hu.length);

  const lumen = new Uint8Array(hu.length);
  for (let i = 0; i < hu.length; i++) lumen[i] = hu[i] < lumenHu && inBody[i] === 1 ? 1 : 0;

  const lowest = Math.max(0, Math.floor(slices * (1 - (opts.searchFraction ?? 0.4))));
  let tracheaSlice = -1;
  for (let k = slices - 1; k >= lowest && tracheaSlice < 0; k--) {
    const seed = tracheaCandidate(lumen, inBody, k * sliceSize, rows, columns, minArea, maxArea);
    if (seed === undefined) continue;
    tracheaSlice = k;
    for (const pixel of seed) mask[k * sliceSize + pixel] = 1;
  }
  if (tracheaSlice < 0) return { mask, voxels: 0, tracheaSlice };

  let voxels = 0;
  for (let i = tracheaSlice * sliceSize; i < (tracheaSlice + 1) * sliceSize; i++) voxels += mask[i];
  for (let k = tracheaSlice - 1; k >= 0; k--) {
    const added = growOneSlice(lumen, mask, k, rows, columns, leakGrowth, maxArea);
    if (added === 0) break;
    voxels += added;
  }
  return { mask, voxels, tracheaSlice };
}

// The lumen component of one slice that fits a trachea, nearest the body's middle column; its pixels.
function tracheaCandidate(lumen: Uint8Array, inBody: Uint8Array, offset: number, rows: number, columns: number, minArea: number, maxArea: number): number[] | undefined {
  let bodyMin = columns;
  let bodyMax = -1;
  for (let pixel = 0; pixel < rows * columns; pixel++) {
    if (inBody[offset + pixel] === 0) continue;
    const col = pixel % columns;
    if (col < bodyMin) bodyMin = col;
    if (col > bodyMax) bodyMax = col;
  }
  if (bodyMax < 0) return undefined;
  const middle = (bodyMin + bodyMax) / 2;
  const halfWidth = (bodyMax - bodyMin) / 2;

  const { labels, sizes } = labelComponents2d(lumen, offset, rows, columns);
  const columnSums = new Float64Array(sizes.length);
  for (let pixel = 0; pixel < rows * columns; pixel++) if (labels[pixel] > 0) columnSums[labels[pixel]] += pixel % columns;
  let best = -1;
  let bestDistance = Infinity;
  for (let label = 1; label < sizes.length; label++) {
    if (sizes[label] < minArea || sizes[label] > maxArea) continue;
    const distance = Math.abs(columnSums[label] / sizes[label] - middle);
    // The trachea lies within the middle fifth of the body's width.
    if (distance > 0.2 * halfWidth || distance >= bestDistance) continue;
    best = label;
    bestDistance = distance;
  }
  if (best < 0) return undefined;
  const pixels: number[] = [];
  for (let pixel = 0; pixel < rows * columns; pixel++) if (labels[pixel] === best) pixels.push(pixel);
  return pixels;
}

// Adds to slice k the lumen components that overlap the airway of slice k + 1 and did not leak; returns the pixels added.
function growOneSlice(lumen: Uint8Array, mask: Uint8Array, k: number, rows: number, columns: number, leakGrowth: number, maxArea: number): number {
  const sliceSize = rows * columns;
  const offset = k * sliceSize;
  const above = offset + sliceSize;
  const { labels, sizes } = labelComponents2d(lumen, offset, rows, columns);
  const overlap = new Float64Array(sizes.length);
  for (let pixel = 0; pixel < sliceSize; pixel++) if (labels[pixel] > 0 && mask[above + pixel] === 1) overlap[labels[pixel]] += 1;

  // Each component is compared with the airway area of the slice above that it touches.
  const parentArea = new Float64Array(sizes.length);
  const aboveLabels = labelComponents2d(mask, above, rows, columns);
  const counted = new Set<string>();
  for (let pixel = 0; pixel < sliceSize; pixel++) {
    const label = labels[pixel];
    const parent = aboveLabels.labels[pixel];
    if (label === 0 || parent === 0 || counted.has(`${label}:${parent}`)) continue;
    counted.add(`${label}:${parent}`);
    parentArea[label] += aboveLabels.sizes[parent];
  }

  let added = 0;
  for (let pixel = 0; pixel < sliceSize; pixel++) {
    const label = labels[pixel];
    // The carina doubles the lumen area too, so only a jump past the largest trachea area counts as a leak.
    const leaked = sizes[label] > leakGrowth * parentArea[label] && sizes[label] > maxArea;
    if (label === 0 || overlap[label] === 0 || leaked) continue;
    mask[offset + pixel] = 1;
    added += 1;
  }
  return added;
}
