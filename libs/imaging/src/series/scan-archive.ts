import { stat } from 'node:fs/promises';
import { dirname, sep } from 'node:path';
import type { CtSliceHeader } from '../dicom/ct-header';
import type { DicomRejectCode } from '../dicom/errors';
import type { ReadLimits } from '../dicom/read-slice';
import type { DecodePool } from './decode-pool';
import { assembleSeries, type SeriesGeometry, type SeriesProblemCode } from './assemble';
import { angleDegrees } from './geometry';
import { groupSlices } from './group';
import { ScanIndex, type ScannedFile } from './scan-index';
import { readSliceStats, type ScannedSlice } from './scan-file';
import { listFilesRecursively } from './walk';

/** A file the scan could not use, with the reason. */
export interface SkippedFile {
  path: string;
  code: DicomRejectCode | 'io-error' | 'not-a-file';
  reason: string;
}

/** A series whose readable slices still do not form a volume. */
export interface RejectedSeries {
  seriesInstanceUID: string;
  dir: string;
  files: string[];
  code: SeriesProblemCode;
  reason: string;
}

/** One usable CT series. */
export interface SeriesSummary {
  seriesInstanceUID: string;
  studyInstanceUID: string;
  /** Deepest directory that contains every file of the series. */
  dir: string;
  rows: number;
  columns: number;
  slices: number;
  /** Median gap between neighbouring slices along the slice normal, in mm. */
  sliceSpacing: number;
  /** Row spacing then column spacing, in mm. */
  pixelSpacing: [number, number];
  /** HU statistics over every pixel of the series; absent after a scan with `headersOnly`. */
  huMin?: number;
  huMax?: number;
  huMean?: number;
  /** Files ordered by position along the slice normal, ascending; a multi-frame file appears once. */
  files: string[];
  warnings: string[];
  imageType: string[];
  convolutionKernel: string | undefined;
  seriesDescription: string | undefined;
  acquisitionNumber?: number;
  /** Angle between the slice normal and the patient's feet-head axis, in degrees. */
  axialDeviationDegrees: number;
  /** False when the gaps are uneven and loadSeriesVolume resamples to the median spacing. */
  uniformSpacing: boolean;
}

export interface ScanReport {
  root: string;
  series: SeriesSummary[];
  rejected: RejectedSeries[];
  skipped: SkippedFile[];
}

export interface ScanOptions extends ReadLimits {
  /** Files read at the same time (default 4). Memory use is about this many slices. */
  concurrency?: number;
  /** Called after each batch of files with the number of files done and the total. */
  onProgress?: (done: number, total: number) => void;
  /** Results of earlier scans: files whose size and mtime are unchanged are not read again. */
  index?: ScanIndex;
  /**
   * Parses headers and locates the pixel data of every frame, but decodes no pixels, so the
   * summaries have no HU statistics and a frame that cannot be decoded is found only when
   * the series is loaded. Choosing a series needs only headers, and this reads an exam
   * about twice as fast. The index is neither read nor written.
   */
  headersOnly?: boolean;
  /**
   * Worker threads to read the files on, in parallel, with a hard time limit per file (see
   * DecodePool.scanFile). Without a pool, files are read on the calling thread, where the
   * time limit is checked only between the steps of reading a file.
   */
  pool?: DecodePool;
}

type SliceStats = ScannedSlice;

/**
 * Scans a directory tree for CT series, reading every file (any or no extension) once.
 * Only per-file HU statistics are kept, never the pixels of the archive. Every file that
 * is not used lands in `skipped` and every series that cannot form a volume in `rejected`,
 * each with its reason.
 * @throws only when the root directory itself cannot be listed.
 */
export async function scanArchive(dir: string, opts: ScanOptions = {}): Promise<ScanReport> {
  // With a pool, twice its size keeps every worker busy while replies come back.
  const concurrency = Math.max(1, opts.concurrency ?? Math.max(4, 2 * (opts.pool?.size ?? 0)));
  const index = opts.headersOnly || opts.index === undefined ? ScanIndex.inMemory() : opts.index;
  const { files, skipped: notFiles } = await listFilesRecursively(dir);
  const skipped: SkippedFile[] = [...notFiles];
  // Progress starts at 0 once the file count is known, so a caller's clock covers the first batch.
  opts.onProgress?.(0, files.length);
  const slices: SliceStats[] = [];

  for (let start = 0; start < files.length; start += concurrency) {
    const batch = files.slice(start, start + concurrency);
    const results = await Promise.all(batch.map((path) => scanFile(path, opts, index, opts.headersOnly === true, opts.pool)));
    for (const [offset, result] of results.entries()) {
      if ('skip' in result) skipped.push({ path: batch[offset], ...result.skip });
      else slices.push(...result.frames);
    }
    opts.onProgress?.(Math.min(start + concurrency, files.length), files.length);
  }

  const series: SeriesSummary[] = [];
  const rejected: RejectedSeries[] = [];
  const headers = slices.map((stats) => stats.header);
  for (const group of groupSlices(headers)) {
    const members = group.indices.map((index) => slices[index]);
    const groupHeaders = members.map((stats) => stats.header);
    const assembly = assembleSeries(groupHeaders);
    const paths = unique(groupHeaders.map((header) => header.path));
    if (!assembly.ok) {
      rejected.push({ seriesInstanceUID: group.seriesInstanceUID, dir: commonDirectory(paths), files: paths, code: assembly.code, reason: assembly.reason });
      continue;
    }
    series.push(summarize(group.seriesInstanceUID, members, assembly.geometry, group.acquisitionNumber));
  }

  series.sort((a, b) => a.dir.localeCompare(b.dir, 'en') || a.seriesInstanceUID.localeCompare(b.seriesInstanceUID, 'en'));
  return { root: dir, series, rejected, skipped };
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

function summarize(uid: string, group: SliceStats[], geometry: SeriesGeometry, acquisitionNumber: number | undefined): SeriesSummary {
  let huMin = Infinity;
  let huMax = -Infinity;
  let sum = 0;
  let count = 0;
  for (const stats of group) {
    huMin = Math.min(huMin, stats.min);
    huMax = Math.max(huMax, stats.max);
    sum += stats.sum;
    count += stats.count;
  }
  // Frames scanned without decoding count no pixels.
  const statistics = count > 0 ? { huMin, huMax, huMean: sum / count } : {};
  const files = unique(geometry.order.map((index) => group[index].header.path));
  const first = group[geometry.order[0]].header;
  return {
    seriesInstanceUID: uid,
    studyInstanceUID: group[0].header.studyInstanceUID,
    dir: commonDirectory(files),
    rows: geometry.rows,
    columns: geometry.columns,
    slices: geometry.order.length,
    sliceSpacing: geometry.sliceSpacing,
    pixelSpacing: geometry.pixelSpacing,
    ...statistics,
    files,
    warnings: geometry.warnings,
    imageType: first.imageType,
    convolutionKernel: first.convolutionKernel,
    seriesDescription: first.seriesDescription,
    acquisitionNumber,
    axialDeviationDegrees: angleDegrees([0, 0, 1], geometry.normal),
    uniformSpacing: geometry.uniform,
  };
}

// Reads one file, or takes its result from the index when its size and mtime are unchanged.
async function scanFile(path: string, limits: ReadLimits, index: ScanIndex, headersOnly: boolean, pool: DecodePool | undefined): Promise<ScannedFile> {
  let size: number;
  let mtimeMs: number;
  try {
    ({ size, mtimeMs } = await stat(path));
  } catch (error) {
    return { skip: { code: 'io-error', reason: (error as Error).message } };
  }
  const stored = index.get(path, size, mtimeMs);
  if (stored !== undefined) return stored;
  const scanned = await (pool === undefined ? readSliceStats(path, limits, headersOnly) : pool.scanFile(path, limits, headersOnly));
  // An I/O error may be passing (a file being copied in), so it is not remembered.
  if (!('skip' in scanned && scanned.skip.code === 'io-error')) index.set(path, size, mtimeMs, scanned);
  return scanned;
}

function commonDirectory(paths: readonly string[]): string {
  const parts = paths.map((path) => dirname(path).split(sep));
  const shared: string[] = [];
  for (let i = 0; i < parts[0].length; i++) {
    const part = parts[0][i];
    if (!parts.every((p) => p[i] === part)) break;
    shared.push(part);
  }
  return shared.join(sep) || sep;
}
