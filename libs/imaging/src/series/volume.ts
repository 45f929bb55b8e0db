import { readCtFile, type CtFile, type ReadLimits } from '../dicom/read-slice';
import { assembleSeries, type SeriesProblemCode } from './assemble';
import type { DecodePool } from './decode-pool';

/** A CT volume in Hounsfield units, slice-major: index = (slice * rows + row) * columns + column. */
export interface Volume {
  hu: Float32Array;
  slices: number;
  rows: number;
  columns: number;
  /** Row spacing then column spacing, in mm. */
  pixelSpacing: [number, number];
  /** Gap between neighbouring slices along the slice normal, in mm; uniform after loading. */
  sliceSpacing: number;
}

/** Slices of one series that do not form a volume. */
export class SeriesAssemblyError extends Error {
  constructor(
    readonly code: SeriesProblemCode,
    readonly reason: string,
  ) {
    super(`series cannot be assembled: ${reason}`);
    this.name = 'SeriesAssemblyError';
  }
}

/**
 * Loads the files of one series into a volume ordered by position along the slice normal
 * (ascending), whatever the order of `files`. Multi-frame files contribute every frame.
 * When the gaps between slices are uneven (within the limits of assembleSeries), the
 * volume is resampled along the normal to the median spacing by linear interpolation.
 * With `options.pool`, files are read and decoded on the pool's worker threads.
 * @throws DicomReadError for a file that is not a readable CT image, SeriesAssemblyError when
 *   the slices do not form a volume (see assembleSeries).
 */
export async function loadSeriesVolume(files: readonly string[], limits: ReadLimits = {}, options: { pool?: DecodePool } = {}): Promise<Volume> {
  if (options.pool) return loadWithPool(files, limits, options.pool);
  const parsed = await readFilesConcurrently(files, limits);
  // One entry per frame, in file order, so that assembleSeries indices map back to a file and frame.
  const frames = parsed.flatMap((file) => file.headers.map((header, frame) => ({ file, frame, header })));

  const assembly = assembleSeries(frames.map((entry) => entry.header));
  if (!assembly.ok) throw new SeriesAssemblyError(assembly.code, assembly.reason);

  const { order, positions, rows, columns, pixelSpacing, sliceSpacing, uniform } = assembly.geometry;
  const sliceSize = rows * columns;
  if (uniform) {
    // Each frame is decoded straight into its place in the volume: no per-slice array, no copy.
    const hu = new Float32Array(order.length * sliceSize);
    order.forEach((index, position) => {
      const { file, frame } = frames[index];
      file.decodeFrame(frame, hu.subarray(position * sliceSize, (position + 1) * sliceSize));
    });
    return { hu, slices: order.length, rows, columns, pixelSpacing, sliceSpacing };
  }
  const ordered = order.map((index) => frames[index].file.decodeFrame(frames[index].frame));
  const hu = resampleAlongNormal(ordered, positions, sliceSpacing, sliceSize);
  return { hu, slices: hu.length / sliceSize, rows, columns, pixelSpacing, sliceSpacing };
}

// The same volume as loadSeriesVolume, with files parsed and decoded on the pool's worker
// threads. With uniform spacing the workers write each frame straight into the volume.
async function loadWithPool(files: readonly string[], limits: ReadLimits, pool: DecodePool): Promise<Volume> {
  const batch = await pool.parseFiles(files, limits);
  const frames = batch.files.flatMap((file, index) => file.headers.map((header, frame) => ({ file: index, frame, header })));
  const assembly = assembleSeries(frames.map((entry) => entry.header));
  if (!assembly.ok) {
    await batch.release();
    throw new SeriesAssemblyError(assembly.code, assembly.reason);
  }

  const { order, positions, rows, columns, pixelSpacing, sliceSpacing, uniform } = assembly.geometry;
  const sliceSize = rows * columns;
  const shared = new SharedArrayBuffer(order.length * sliceSize * Float32Array.BYTES_PER_ELEMENT);
  await batch.decodeInto(
    shared,
    order.map((index, position) => ({ file: frames[index].file, frame: frames[index].frame, at: position * sliceSize })),
  );
  const ordered = new Float32Array(shared);
  if (uniform) return { hu: ordered, slices: order.length, rows, columns, pixelSpacing, sliceSpacing };

  const slices = order.map((_, position) => ordered.subarray(position * sliceSize, (position + 1) * sliceSize));
  const hu = resampleAlongNormal(slices, positions, sliceSpacing, sliceSize);
  return { hu, slices: hu.length / sliceSize, rows, columns, pixelSpacing, sliceSpacing };
}

// Files read and parsed at the same time; reads overlap with parsing, and memory stays a few files.
const READ_CONCURRENCY = 4;

async function readFilesConcurrently(files: readonly string[], limits: ReadLimits): Promise<CtFile[]> {
  const parsed: CtFile[] = new Array(files.length);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const index = next++;
      parsed[index] = await readCtFile(files[index], limits);
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, files.length) }, worker));
  return parsed;
}

/**
 * Interpolates slices at uneven positions (ascending, in mm) onto a grid that starts at the
 * first position and steps by `spacing`, linearly between the two nearest slices.
 */
export function resampleAlongNormal(slices: readonly Float32Array[], positions: readonly number[], spacing: number, sliceSize: number): Float32Array {
  const span = positions[positions.length - 1] - positions[0];
  // The small allowance keeps the last slice when the span is a whole number of spacings.
  const count = Math.floor(span / spacing + 1e-6) + 1;
  const out = new Float32Array(count * sliceSize);
  let below = 0;
  for (let k = 0; k < count; k++) {
    const target = positions[0] + k * spacing;
    while (below + 1 < positions.length - 1 && positions[below + 1] <= target) below += 1;
    const above = Math.min(below + 1, positions.length - 1);
    const width = positions[above] - positions[below];
    const weight = width > 0 ? Math.min(1, Math.max(0, (target - positions[below]) / width)) : 0;
    const a = slices[below];
    const b = slices[above];
    const base = k * sliceSize;
    for (let i = 0; i < sliceSize; i++) out[base + i] = a[i] + (b[i] - a[i]) * weight;
  }
  return out;
}
