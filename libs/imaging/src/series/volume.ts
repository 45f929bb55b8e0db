import { readCtSlice, type CtSlice } from '../dicom/read-slice';
import { assembleSeries, type SeriesProblemCode } from './assemble';

/** A CT volume in Hounsfield units, slice-major: index = (slice * rows + row) * columns + column. */
export interface Volume {
  hu: Float32Array;
  slices: number;
  rows: number;
  columns: number;
  /** Row spacing then column spacing, in mm. */
  pixelSpacing: [number, number];
  /** Median gap between neighbouring slices along the slice normal, in mm. */
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
 * (ascending), whatever the order of `files`.
 * @throws DicomReadError for a file that is not a readable CT slice, SeriesAssemblyError when
 *   the slices disagree on size, orientation or pixel spacing, or two share a position.
 */
export async function loadSeriesVolume(files: readonly string[]): Promise<Volume> {
  const slices: CtSlice[] = [];
  for (const path of files) slices.push(await readCtSlice(path));

  const assembly = assembleSeries(slices.map((slice) => slice.header));
  if (!assembly.ok) throw new SeriesAssemblyError(assembly.code, assembly.reason);

  const { order, rows, columns, pixelSpacing, sliceSpacing } = assembly.geometry;
  const sliceSize = rows * columns;
  const hu = new Float32Array(order.length * sliceSize);
  order.forEach((index, position) => hu.set(slices[index].hu, position * sliceSize));

  return { hu, slices: order.length, rows, columns, pixelSpacing, sliceSpacing };
}
