import type { CtSliceHeader } from '../dicom/ct-header';
import { angleDegrees, median, positionAlongNormal, sameOrientation, sliceNormal } from './geometry';

/** Reason code for slices of one series that cannot form a volume. */
export type SeriesProblemCode =
  | 'too-few-slices'
  | 'mixed-series'
  | 'inconsistent-size'
  | 'inconsistent-orientation'
  | 'inconsistent-pixel-spacing'
  | 'duplicate-position'
  | 'missing-slices'
  | 'gantry-tilt';

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
  /** True when every gap is within SPACING_TOLERANCE of the median; otherwise the volume is resampled to the median spacing. */
  uniform: boolean;
  /** Unit normal of the slice plane (row cosines x column cosines). */
  normal: [number, number, number];
  /** Irregularities that do not stop the series from being used, e.g. a gap from a missing slice. */
  warnings: string[];
}

export type SeriesAssembly =
  | { ok: true; geometry: SeriesGeometry }
  | { ok: false; code: SeriesProblemCode; reason: string };

// Two slices closer than this along the normal are treated as the same position.
const SAME_POSITION_MM = 0.01;
const PIXEL_SPACING_TOLERANCE_MM = 1e-3;
/** Gaps may differ from the median by this fraction before the volume is resampled. */
export const SPACING_TOLERANCE = 0.05;
/** A gap larger than this many median spacings means several missing slices: the series is rejected. */
export const MAX_GAP_FACTOR = 2.5;
/** Angle between the slice normal and the line through the slice positions above which the stack is sheared by gantry tilt. */
export const MAX_TILT_DEGREES = 0.5;

function label(header: CtSliceHeader): string {
  return header.frameCount > 1 ? `${header.path} frame ${header.frameIndex + 1}` : header.path;
}

/**
 * Orders the slices of one series by ImagePositionPatient projected on the slice normal
 * (InstanceNumber and file names are not trusted) and checks that they form a volume:
 * one SeriesInstanceUID, same size, orientation and pixel spacing, no two slices at one position, no gap over
 * MAX_GAP_FACTOR median spacings, and a stack perpendicular to the slices (no gantry tilt).
 * Uneven but acceptable gaps mark the geometry as not uniform, with a warning.
 */
export function assembleSeries(headers: readonly CtSliceHeader[]): SeriesAssembly {
  if (headers.length < 2) {
    const where = headers.length === 0 ? '' : ` (${label(headers[0])})`;
    return { ok: false, code: 'too-few-slices', reason: `${headers.length} slice(s)${where}; a volume needs at least 2` };
  }

  const first = headers[0];
  for (const header of headers) {
    if (header.seriesInstanceUID !== first.seriesInstanceUID) {
      return { ok: false, code: 'mixed-series', reason: `${label(header)} belongs to series ${header.seriesInstanceUID} but ${label(first)} to series ${first.seriesInstanceUID}` };
    }
    if (header.rows !== first.rows || header.columns !== first.columns) {
      return { ok: false, code: 'inconsistent-size', reason: `${label(header)} is ${header.rows}x${header.columns} but ${label(first)} is ${first.rows}x${first.columns}` };
    }
    if (!sameOrientation(header.imageOrientationPatient, first.imageOrientationPatient)) {
      return { ok: false, code: 'inconsistent-orientation', reason: `ImageOrientationPatient of ${label(header)} (${header.imageOrientationPatient.join('\\')}) differs from ${label(first)} (${first.imageOrientationPatient.join('\\')})` };
    }
    const spacingDiffers = header.pixelSpacing.some((value, axis) => Math.abs(value - first.pixelSpacing[axis]) > PIXEL_SPACING_TOLERANCE_MM);
    if (spacingDiffers) {
      return { ok: false, code: 'inconsistent-pixel-spacing', reason: `PixelSpacing of ${label(header)} (${header.pixelSpacing.join('\\')}) differs from ${label(first)} (${first.pixelSpacing.join('\\')})` };
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
      return { ok: false, code: 'duplicate-position', reason: `${label(headers[order[i - 1]])} and ${label(headers[order[i]])} lie at the same position (${positions[i].toFixed(3)} mm along the slice normal)` };
    }
    gaps.push(gap);
  }

  const lowest = headers[order[0]].imagePositionPatient;
  const highest = headers[order[order.length - 1]].imagePositionPatient;
  const stack = [highest[0] - lowest[0], highest[1] - lowest[1], highest[2] - lowest[2]];
  const tilt = angleDegrees(stack, normal);
  if (tilt > MAX_TILT_DEGREES) {
    return {
      ok: false,
      code: 'gantry-tilt',
      reason: `slice positions run at ${tilt.toFixed(1)} degrees to the slice normal (GantryDetectorTilt ${first.gantryDetectorTilt}); tilted stacks are not corrected, limit ${MAX_TILT_DEGREES} degrees`,
    };
  }

  const sliceSpacing = median(gaps);
  const warnings: string[] = [];
  let uniform = true;
  for (let index = 0; index < gaps.length; index++) {
    const gap = gaps[index];
    if (gap > MAX_GAP_FACTOR * sliceSpacing) {
      return {
        ok: false,
        code: 'missing-slices',
        reason: `gap of ${gap.toFixed(2)} mm before ${label(headers[order[index + 1]])} is ${(gap / sliceSpacing).toFixed(1)} times the median spacing ${sliceSpacing.toFixed(2)} mm; slices are missing`,
      };
    }
    if (Math.abs(gap - sliceSpacing) > SPACING_TOLERANCE * sliceSpacing) {
      uniform = false;
      warnings.push(`gap of ${gap.toFixed(2)} mm before ${label(headers[order[index + 1]])}, median spacing is ${sliceSpacing.toFixed(2)} mm; the volume is resampled to uniform spacing`);
    }
  }

  return {
    ok: true,
    geometry: { order, positions, rows: first.rows, columns: first.columns, pixelSpacing: [...first.pixelSpacing], sliceSpacing, uniform, normal, warnings },
  };
}
