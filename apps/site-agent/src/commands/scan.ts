import { resolve } from 'node:path';
import { DecodePool, scanArchive, ScanIndex } from '@covnet/imaging';
import { defaultCacheDir, scanIndexPath } from '../archive/cache-dir';
import { writeScanPreviews } from '../archive/scan-preview';
import { log } from '../log';
import { startProgress, type Progress } from '../progress';
import { parseCommand, parseDecodeThreads, UsageError } from './args';

const USAGE = 'scan DIR [--json] [--preview OUT_DIR] [--cache-dir DIR] [--decode-threads N]';

/**
 * `scan DIR [--json] [--preview OUT_DIR] [--cache-dir DIR]`: lists the CT series of an archive
 * and every file it cannot use, with progress on stderr. With --preview, also writes PNGs of
 * three slices of each study's lung series to OUT_DIR, with the lung mask outlined in red and
 * the crop box in green. Results per file are kept in a scan index under --cache-dir (default
 * ~/.cache/covnet-site-agent), so a second scan reads only new or changed files. Files are
 * read on --decode-threads worker threads (default: one per core), each stopped when one file
 * takes longer than the per-file time limit; 1 reads them on the main thread.
 */
export async function scanCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    json: { type: 'boolean', default: false },
    preview: { type: 'string' },
    'cache-dir': { type: 'string' },
    'decode-threads': { type: 'string' },
  });
  if (positionals.length !== 1) throw new UsageError(`scan takes one folder: ${USAGE}`);
  const root = resolve(positionals[0]);
  const cacheDir = resolve(values['cache-dir'] ?? defaultCacheDir());
  const decodeThreads = parseDecodeThreads(values['decode-threads']);

  const index = await ScanIndex.load(scanIndexPath(cacheDir, root));
  // A bar on a terminal, plain lines at each quarter in a log; started once the file count is known.
  let progress: Progress | null = null;
  let files = 0;
  const pool = decodeThreads > 1 ? new DecodePool(decodeThreads) : undefined;
  const report = await scanArchive(root, {
    index,
    pool,
    onProgress: (done, total) => {
      progress ??= startProgress('scan', total);
      files = total;
      progress.update(done);
    },
  }).finally(() => pool?.close());
  (progress as Progress | null)?.finish(`${files}/${files} files`);
  try {
    await index.save();
  } catch (error) {
    // The index only saves time on the next scan, so the finished report still counts.
    log.warn({ cacheDir, error: (error as Error).message }, 'scan index not saved; the next scan reads every file again');
  }
  const previews = values.preview === undefined ? [] : await writeScanPreviews(report, resolve(values.preview));

  if (values.json) {
    process.stdout.write(`${JSON.stringify(values.preview === undefined ? report : { ...report, previews }, null, 2)}\n`);
    return 0;
  }
  for (const s of report.series) {
    process.stdout.write(
      `${s.dir}\n  ${s.rows}x${s.columns}, ${s.slices} slices, spacing ${s.sliceSpacing.toFixed(2)} mm, ` +
        `HU min ${s.huMin} max ${s.huMax} mean ${s.huMean?.toFixed(1)}\n`,
    );
  }
  for (const rejected of report.rejected) {
    process.stdout.write(`rejected series ${rejected.dir} (${rejected.files.length} files): ${rejected.reason}\n`);
  }
  for (const skipped of report.skipped) process.stdout.write(`skipped ${skipped.path}: ${skipped.reason}\n`);
  for (const preview of previews) process.stdout.write(`preview ${preview.path} (series ${preview.seriesInstanceUID}, slice ${preview.slice})\n`);
  process.stdout.write(`${report.series.length} series, ${report.rejected.length} series rejected, ${report.skipped.length} files skipped\n`);
  return 0;
}
