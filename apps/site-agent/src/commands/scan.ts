import { resolve } from 'node:path';
import { scanArchive } from '@covnet/imaging';
import { writeScanPreviews } from '../archive/scan-preview';
import { parseCommand, UsageError } from './args';

const USAGE = 'scan DIR [--json] [--preview OUT_DIR]';

/**
 * `scan DIR [--json] [--preview OUT_DIR]`: lists the CT series of an archive and every file it
 * cannot use. With --preview, also writes PNGs of three slices of each study's lung series
 * to OUT_DIR, with the lung mask outlined in red and the crop box in green.
 */
export async function scanCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    json: { type: 'boolean', default: false },
    preview: { type: 'string' },
  });
  if (positionals.length !== 1) throw new UsageError(`scan takes one folder: ${USAGE}`);
  const report = await scanArchive(resolve(positionals[0]));
  const previews = values.preview === undefined ? [] : await writeScanPreviews(report, resolve(values.preview));

  if (values.json) {
    process.stdout.write(`${JSON.stringify(values.preview === undefined ? report : { ...report, previews }, null, 2)}\n`);
    return 0;
  }
  for (const s of report.series) {
    process.stdout.write(
      `${s.dir}\n  ${s.rows}x${s.columns}, ${s.slices} slices, spacing ${s.sliceSpacing.toFixed(2)} mm, ` +
        `HU min ${s.huMin} max ${s.huMax} mean ${s.huMean.toFixed(1)}\n`,
    );
  }
  for (const skipped of report.skipped) process.stdout.write(`skipped ${skipped.path}: ${skipped.reason}\n`);
  for (const preview of previews) process.stdout.write(`preview ${preview.path} (series ${preview.seriesInstanceUID}, slice ${preview.slice})\n`);
  process.stdout.write(`${report.series.length} series, ${report.skipped.length} files skipped\n`);
  return 0;
}
