import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  computeLungMask,
  loadSeriesVolume,
  lungCropBox,
  renderLungPreview,
  selectLungSeries,
  selectSlices,
  type ScanReport,
  type SeriesSummary,
} from '@covnet/imaging';
import { PNG } from 'pngjs';
import { log } from '../log';

/** One preview PNG written by writeScanPreviews. */
export interface PreviewFile {
  path: string;
  seriesInstanceUID: string;
  /** Index of the slice in the series volume, ordered from feet to head. */
  slice: number;
}

/** Slices rendered per chosen series. */
export const PREVIEW_SLICES = 3;

/**
 * Writes PNG previews of each study's lung series (chosen by selectLungSeries): PREVIEW_SLICES
 * slices spread over the lungs, in the lung window, with the lung mask outlined in red and
 * the crop box in green. Files are named `study-<n>-slice-<k>.png`, with no patient data.
 * @throws when outDir cannot be created or a file cannot be written; a series that cannot
 *   be loaded is logged and skipped.
 */
export async function writeScanPreviews(report: ScanReport, outDir: string): Promise<PreviewFile[]> {
  await mkdir(outDir, { recursive: true });
  const written: PreviewFile[] = [];
  const studies = groupByStudy(report.series);
  for (const [index, series] of studies.entries()) {
    const { chosen } = selectLungSeries(series);
    if (chosen === undefined) continue;
    const study = String(index + 1).padStart(3, '0');
    try {
      written.push(...(await writeSeriesPreviews(chosen, outDir, study)));
    } catch (error) {
      log.error({ series: chosen.seriesInstanceUID, error: (error as Error).message }, 'preview failed; series skipped');
    }
  }
  return written;
}

async function writeSeriesPreviews(series: SeriesSummary, outDir: string, study: string): Promise<PreviewFile[]> {
  const volume = await loadSeriesVolume(series.files);
  const lungMask = computeLungMask(volume);
  const { crop } = lungCropBox(volume, lungMask);

  const sliceSize = volume.rows * volume.columns;
  const lungSlices: number[] = [];
  for (let k = 0; k < volume.slices; k++) {
    if (lungMask.mask.subarray(k * sliceSize, (k + 1) * sliceSize).includes(1)) lungSlices.push(k);
  }
  // Slices at a quarter, half and three quarters of the lungs' extent show most of them.
  const slices = lungSlices.length > 0 ? quartiles(lungSlices) : selectSlices(volume.slices, PREVIEW_SLICES);

  const files: PreviewFile[] = [];
  for (const slice of slices) {
    const image = renderLungPreview(volume, lungMask, crop, slice);
    const png = new PNG({ width: image.width, height: image.height });
    png.data.set(image.rgba);
    const path = join(outDir, `study-${study}-slice-${String(slice).padStart(3, '0')}.png`);
    await writeFile(path, PNG.sync.write(png));
    files.push({ path, seriesInstanceUID: series.seriesInstanceUID, slice });
  }
  return files;
}

function quartiles(values: number[]): number[] {
  const picked = [0.25, 0.5, 0.75].map((fraction) => values[Math.min(values.length - 1, Math.floor(fraction * values.length))]);
  return [...new Set(picked)];
}

function groupByStudy(series: readonly SeriesSummary[]): SeriesSummary[][] {
  const studies = new Map<string, SeriesSummary[]>();
  for (const entry of series) {
    const members = studies.get(entry.studyInstanceUID) ?? [];
    members.push(entry);
    studies.set(entry.studyInstanceUID, members);
  }
  return [...studies.values()];
}
