import { dirname, sep } from 'node:path';
import type { CtSliceHeader } from '../dicom/ct-header';
import { DicomReadError, type DicomRejectCode } from '../dicom/errors';
import { readCtSlice } from '../dicom/read-slice';
import { assembleSeries, type SeriesGeometry, type SeriesProblemCode } from './assemble';
import { listFilesRecursively } from './walk';

/** A file the scan could not use, with the reason. */
export interface SkippedFile {
  path: string;
  code: DicomRejectCode | 'io-error';
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
  huMin: number;
  huMax: number;
  huMean: number;
  /** Files ordered by position along the slice normal, ascending. */
  files: string[];
  warnings: string[];
}

export interface ScanReport {
  root: string;
  series: SeriesSummary[];
  rejected: RejectedSeries[];
  skipped: SkippedFile[];
}

export interface ScanOptions {
  /** Files read at the same time (default 4). Memory use is about this many slices. */
  concurrency?: number;
}

interface SliceStats {
  header: CtSliceHeader;
  min: number;
  max: number;
  sum: number;
  count: number;
}

/**
 * Scans a directory tree for CT series, reading every file (any or no extension) once.
 * Only per-file HU statistics are kept, never the pixels of the archive. Every file that
 * is not used lands in `skipped` and every series that cannot form a volume in `rejected`,
 * each with its reason.
 * @throws only when the root directory itself cannot be listed.
 */
export async function scanArchive(dir: string, opts: ScanOptions = {}): Promise<ScanReport> {
  const concurrency = Math.max(1, opts.concurrency ?? 4);
  const files = await listFilesRecursively(dir);
  const skipped: SkippedFile[] = [];
  const bySeries = new Map<string, SliceStats[]>();

  for (let start = 0; start < files.length; start += concurrency) {
    const batch = files.slice(start, start + concurrency);
    const results = await Promise.all(batch.map((path) => readSliceStats(path)));
    for (const result of results) {
      if ('skip' in result) {
        skipped.push(result.skip);
        continue;
      }
      const uid = result.stats.header.seriesInstanceUID;
      const group = bySeries.get(uid) ?? [];
      group.push(result.stats);
      bySeries.set(uid, group);
    }
  }

  const series: SeriesSummary[] = [];
  const rejected: RejectedSeries[] = [];
  for (const [uid, group] of bySeries) {
    const headers = group.map((stats) => stats.header);
    const assembly = assembleSeries(headers);
    const paths = headers.map((header) => header.path);
    if (!assembly.ok) {
      rejected.push({ seriesInstanceUID: uid, dir: commonDirectory(paths), files: paths, code: assembly.code, reason: assembly.reason });
      continue;
    }
    series.push(summarize(uid, group, assembly.geometry));
  }

  series.sort((a, b) => a.dir.localeCompare(b.dir, 'en'));
  return { root: dir, series, rejected, skipped };
}

function summarize(uid: string, group: SliceStats[], geometry: SeriesGeometry): SeriesSummary {
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
  const files = geometry.order.map((index) => group[index].header.path);
  return {
    seriesInstanceUID: uid,
    studyInstanceUID: group[0].header.studyInstanceUID,
    dir: commonDirectory(files),
    rows: geometry.rows,
    columns: geometry.columns,
    slices: files.length,
    sliceSpacing: geometry.sliceSpacing,
    pixelSpacing: geometry.pixelSpacing,
    huMin,
    huMax,
    huMean: sum / count,
    files,
    warnings: geometry.warnings,
  };
}

async function readSliceStats(path: string): Promise<{ stats: SliceStats } | { skip: SkippedFile }> {
  try {
    const { header, hu } = await readCtSlice(path);
    let min = Infinity;
    let max = -Infinity;
    let sum = 0;
    for (let i = 0; i < hu.length; i++) {
      const value = hu[i];
      if (value < min) min = value;
      if (value > max) max = value;
      sum += value;
    }
    return { stats: { header, min, max, sum, count: hu.length } };
  } catch (error) {
    if (error instanceof DicomReadError) return { skip: { path, code: error.code, reason: error.message } };
    const code = (error as NodeJS.ErrnoException).code;
    if (typeof code === 'string') return { skip: { path, code: 'io-error', reason: `${path}: ${(error as Error).message}` } };
    // Anything else is a bug in this library, not a property of the file.
    throw error;
  }
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
