import type { CtSliceHeader } from '../dicom/ct-header';
import { median, positionAlongNormal, sameOrientation, sliceNormal } from './geometry';

/** Reason code for slices of one series that cannot form a volume. */
export type SeriesProblemCode =
  | 'too-few-slices'
  | 'inconsistent-size'
  | 'inconsistent-orientation'
  | 'inconsistent-pixel-spacing'
  | 'duplicate-position';

/** Slice order and spacing of a series whose slices agree on size and orientation. */
export interface SeriesGeometry {
  /** Indices into the input headers, ordered by position along the slice normal (ascending). */
  order: number[];
  /** Position of each ordered slice along the normal, in mm. */
  positions: number[];
  rows: number;
  columns: number;
  pixelSpacing: [number, number];
  /** Median gap between neighbouring slices along the normal, in mm. */
  sliceSpacing: number;
  /** Irregularities that do not stop the series from being used, e.g. a gap from a missing slice. */
  warnings: string[];
}

export type SeriesAssembly =
  | { ok: true; geometry: SeriesGeometry }
  | { ok: false; code: SeriesProblemCode; reason: string };

// Two slices closer than this along the normal are treated as the same position.
const SAME_POSITION_MM = 0.01;
const PIXEL_SPACING_TOLERANCE_MM = 1e-3;

/**
 * Orders the slices of one series by ImagePositionPatient projected on the slice normal
 * (InstanceNumber and file names are not trusted) and checks that they form a volume.
 */
export function assembleSeries(headers: readonly CtSliceHeader[]): SeriesAssembly {
  if (headers.length < 2) {
    const where = headers.length === 0 ? '' : ` (${headers[0].path})`;
    return { ok: false, code: 'too-few-slices', reason: `${headers.length} slice(s)${where}; a volume needs at least 2` };
  }

  const first = headers[0];
  for (const header of headers) {
    if (header.rows !== first.rows || header.columns !== first.columns) {
      return { ok: false, code: 'inconsistent-size', reason: `${header.path} is ${header.rows}x${header.columns} but ${first.path} is ${first.rows}x${first.columns}` };
    }
    if (!sameOrientation(header.imageOrientationPatient, first.imageOrientationPatient)) {
      return { ok: false, code: 'inconsistent-orientation', reason: `ImageOrientationPatient of ${header.path} (${header.imageOrientationPatient.join('\\')}) differs from ${first.path} (${first.imageOrientationPatient.join('\\')})` };
    }
    const spacingDiffers = header.pixelSpacing.some((value, axis) => Math.abs(value - first.pixelSpacing[axis]) > PIXEL_SPACING_TOLERANCE_MM);
    if (spacingDiffers) {
      return { ok: false, code: 'inconsistent-pixel-spacing', reason: `PixelSpacing of ${header.path} (${header.pixelSpacing.join('\\')}) differs from ${first.path} (${first.pixelSpacing.join('\\')})` };
    }
  }

  const normal = sliceNormal(first.imageOrientationPatient);
  const projected = headers.map((header) => positionAlongNormal(header.imagePositionPatient, normal));
  const order = headers.map((_, index) => index).sort((a, b) => projected[a] - projected[b]);
  const positions = order.map((index) => projected[index]);

  const gaps: number[] = [];
  for (let i = 1; i < positions.length; i++) {
    const gap = positions[i] - positions[i - 1];
    if (gap < SAME_POSITION_MM) {
      return { ok: false, code: 'duplicate-position', reason: `${headers[order[i - 1]].path} and ${headers[order[i]].path} lie at the same position (${positions[i].toFixed(3)} mm along the slice normal)` };
    }
    gaps.push(gap);
  }

  const sliceSpacing = median(gaps);
  const warnings: string[] = [];
  gaps.forEach((gap, index) => {
    if (Math.abs(gap - sliceSpacing) > 0.5 * sliceSpacing) {
      warnings.push(`gap of ${gap.toFixed(2)} mm before ${headers[order[index + 1]].path}, median spacing is ${sliceSpacing.toFixed(2)} mm`);
    }
  });

  return {
    ok: true,
    geometry: { order, positions, rows: first.rows, columns: first.columns, pixelSpacing: [...first.pixelSpacing], sliceSpacing, warnings },
  };
}
