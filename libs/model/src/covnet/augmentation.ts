import type { ExamInput } from './exam';

/**
 * Width in HU of the lung window that maps CT values to grey [0, 1] (level -600, width
 * 1500, as @covnet/imaging preprocesses exams). A shift of d HU is a grey shift of d / 1500.
 */
export const LUNG_WINDOW_WIDTH_HU = 1500;

/** Random augmentation ranges; each transform is off when its option is absent or 0. */
export interface AugmentationOptions {
  /** Mirror left-right with probability 1/2. */
  horizontalFlip?: boolean;
  /** Maximum rotation in degrees; the angle is drawn uniformly from [-rotationDegrees, rotationDegrees]. */
  rotationDegrees?: number;
  /** Maximum shift in pixels along each axis, drawn uniformly from [-shiftPixels, shiftPixels]. */
  shiftPixels?: number;
  /** Maximum density offset in HU, drawn uniformly from [-huJitter, huJitter], because scanners differ in calibration. */
  huJitter?: number;
}

/** One drawn transform, applied alike to every slice of an exam. */
export interface ExamTransform {
  flip: boolean;
  /** Counter-clockwise angle in degrees, about the slice centre. */
  rotationDegrees: number;
  /** Shift to the right, in pixels. */
  shiftX: number;
  /** Shift downwards, in pixels. */
  shiftY: number;
  /** Density offset in HU. */
  huShift: number;
}

/** Draws one transform from the ranges; returns the identity when no option is set. */
export function drawTransform(opts: AugmentationOptions, random: () => number): ExamTransform {
  const uniform = (range: number | undefined): number => (range !== undefined && range > 0 ? (2 * random() - 1) * range : 0);
  return {
    flip: opts.horizontalFlip === true && random() < 0.5,
    rotationDegrees: uniform(opts.rotationDegrees),
    shiftX: uniform(opts.shiftPixels),
    shiftY: uniform(opts.shiftPixels),
    huShift: uniform(opts.huJitter),
  };
}

function isIdentity(t: ExamTransform): boolean {
  return !t.flip && t.rotationDegrees === 0 && t.shiftX === 0 && t.shiftY === 0 && t.huShift === 0;
}

/**
 * Applies a transform to every slice: flip, then rotation about the centre and shift, with
 * bilinear sampling, then the density offset. Pixels that come from outside the slice are
 * 0, the grey of air under the lung window. Grey values stay clipped to [0, 1].
 */
export function transformExam(exam: ExamInput, t: ExamTransform): ExamInput {
  if (isIdentity(t)) {
    return exam;
  }
  const { slices, size, data } = exam;
  const out = new Float32Array(data.length);
  const angle = (t.rotationDegrees * Math.PI) / 180;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const centre = (size - 1) / 2;
  const greyShift = t.huShift / LUNG_WINDOW_WIDTH_HU;

  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      // Inverse mapping: the output pixel (x, y) samples the source at the point that the
      // forward rotation (counter-clockwise on screen, where y points down) and shift move onto it.
      const dx = x - t.shiftX - centre;
      const dy = y - t.shiftY - centre;
      let sourceX = cos * dx - sin * dy + centre;
      const sourceY = sin * dx + cos * dy + centre;
      if (t.flip) {
        sourceX = size - 1 - sourceX;
      }
      for (let s = 0; s < slices; s++) {
        const value = sampleBilinear(data, s * size * size, size, sourceX, sourceY) + greyShift;
        out[(s * size + y) * size + x] = Math.min(1, Math.max(0, value));
      }
    }
  }
  return { slices, size, data: out };
}

function sampleBilinear(data: Float32Array, offset: number, size: number, x: number, y: number): number {
  // Snap values within float error of a grid point, so that exact rotations (90 degrees)
  // and integer shifts copy pixels unchanged.
  const snappedX = Math.abs(x - Math.round(x)) < 1e-9 ? Math.round(x) : x;
  const snappedY = Math.abs(y - Math.round(y)) < 1e-9 ? Math.round(y) : y;
  const x0 = Math.floor(snappedX);
  const y0 = Math.floor(snappedY);
  const fx = snappedX - x0;
  const fy = snappedY - y0;
  const at = (col: number, row: number): number => (col >= 0 && col < size && row >= 0 && row < size ? data[offset + row * size + col] : 0);
  const top = at(x0, y0) * (1 - fx) + (fx > 0 ? at(x0 + 1, y0) * fx : 0);
  if (fy === 0) {
    return top;
  }
  const bottom = at(x0, y0 + 1) * (1 - fx) + (fx > 0 ? at(x0 + 1, y0 + 1) * fx : 0);
  return top * (1 - fy) + bottom * fy;
}

/**
 * Returns at most `maxSlices` contiguous slices of the exam, starting at a random slice.
 * Bounds the memory of a training step: a ResNet-50 slice at 224 pixels keeps several
 * hundred MB of activations and their gradients.
 */
export function sliceWindow(exam: ExamInput, maxSlices: number | undefined, random: () => number): ExamInput {
  if (maxSlices === undefined || exam.slices <= maxSlices) {
    return exam;
  }
  const first = Math.floor(random() * (exam.slices - maxSlices + 1));
  const pixels = exam.size * exam.size;
  return { slices: maxSlices, size: exam.size, data: exam.data.slice(first * pixels, (first + maxSlices) * pixels) };
}
