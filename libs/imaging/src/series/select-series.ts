import type { SeriesSummary } from './scan-archive';

/** The series chosen as an exam's axial lung series, with the reasons for the choice and for each exclusion. */
export interface SeriesChoice {
  chosen: SeriesSummary | undefined;
  reasons: string[];
}

/** Largest angle between the slice normal and the patient's feet-head axis for a series to count as axial. */
export const AXIAL_TOLERANCE_DEGREES = 10;
/** Reconstructions with at least this fraction of the most slices count as covering the same range. */
const COMPARABLE_COVERAGE = 0.9;

// Kernel names of sharp (lung or bone) reconstructions, by vendor convention. Siemens uses B60
// and sharper, Br59 and sharper and I70 and sharper, and Canon FC50 to FC56 and FC80 and sharper.
// GE uses LUNG, BONE, BONEPLUS and EDGE, and Philips L, YA, YB, YC, D and E.
// NOTE: a heuristic. Kernel names vary by scanner software version.
const SHARP_KERNEL_PREFIX = /^(B[6-9]\d|BR(59|[6-9]\d)|I[7-9]\d|FC5[0-6]|FC[89]\d)/i;
const SHARP_KERNEL_NAMES = new Set(['LUNG', 'BONE', 'BONEPLUS', 'EDGE', 'L', 'YA', 'YB', 'YC', 'D', 'E']);

/** Tells whether a ConvolutionKernel names a sharp lung or bone reconstruction. */
export function isSharpKernel(kernel: string | undefined): boolean {
  if (kernel === undefined) return false;
  const name = kernel.trim().toUpperCase();
  return SHARP_KERNEL_NAMES.has(name) || SHARP_KERNEL_PREFIX.test(name) || /SHARP|LUNG/.test(name);
}

/**
 * Chooses the exam's axial lung series among assembled series, by rule: axial within
 * AXIAL_TOLERANCE_DEGREES; ORIGINAL\PRIMARY before derived images when any is available;
 * among reconstructions covering a comparable range, a sharp lung kernel first; then most
 * slices, then the thinnest spacing, then SeriesInstanceUID for a stable order.
 */
export function selectLungSeries(series: readonly SeriesSummary[]): SeriesChoice {
  const reasons: string[] = [];
  let candidates = series.filter((entry) => {
    if (entry.axialDeviationDegrees <= AXIAL_TOLERANCE_DEGREES) return true;
    reasons.push(`${entry.seriesInstanceUID}: not axial (normal ${entry.axialDeviationDegrees.toFixed(1)} degrees from the feet-head axis)`);
    return false;
  });
  if (candidates.length === 0) {
    reasons.push(series.length === 0 ? 'no assembled series' : 'no axial series');
    return { chosen: undefined, reasons };
  }

  const isPrimary = (entry: SeriesSummary) => entry.imageType[0] === 'ORIGINAL' && entry.imageType[1] === 'PRIMARY';
  if (candidates.some(isPrimary)) {
    candidates = candidates.filter((entry) => {
      if (isPrimary(entry)) return true;
      reasons.push(`${entry.seriesInstanceUID}: ImageType ${entry.imageType.join('\\')} is not ORIGINAL\\PRIMARY`);
      return false;
    });
  } else {
    reasons.push('no ORIGINAL\\PRIMARY axial series; derived series considered');
  }

  const most = Math.max(...candidates.map((entry) => entry.slices));
  const comparable = candidates.filter((entry) => entry.slices >= COMPARABLE_COVERAGE * most);
  for (const entry of candidates) {
    if (!comparable.includes(entry)) reasons.push(`${entry.seriesInstanceUID}: ${entry.slices} slices, fewer than ${Math.ceil(COMPARABLE_COVERAGE * most)}`);
  }
  const ranked = [...comparable].sort(
    (a, b) =>
      Number(isSharpKernel(b.convolutionKernel)) - Number(isSharpKernel(a.convolutionKernel)) ||
      b.slices - a.slices ||
      a.sliceSpacing - b.sliceSpacing ||
      a.seriesInstanceUID.localeCompare(b.seriesInstanceUID, 'en'),
  );
  const [chosen, ...others] = ranked;
  for (const entry of others) reasons.push(`${entry.seriesInstanceUID}: ranked below (kernel ${entry.convolutionKernel ?? 'unknown'}, ${entry.slices} slices, ${entry.sliceSpacing.toFixed(2)} mm)`);
  const kernelNote = isSharpKernel(chosen.convolutionKernel) ? 'sharp lung kernel' : 'no sharp kernel among comparable reconstructions';
  reasons.unshift(`chose ${chosen.seriesInstanceUID}: axial, ImageType ${chosen.imageType.join('\\')}, ${chosen.slices} slices at ${chosen.sliceSpacing.toFixed(2)} mm, kernel ${chosen.convolutionKernel ?? 'unknown'} (${kernelNote})`);
  return { chosen, reasons };
}
