import { resolve } from 'node:path';
import { scanArchive } from '@covnet/imaging';
import { parseCommand, UsageError } from './args';

/** `scan DIR [--json]`: lists the CT series of an archive and every file it cannot use. */
export async function scanCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, { json: { type: 'boolean', default: false } });
  if (positionals.length !== 1) throw new UsageError('scan takes one folder: scan DIR [--json]');
  const report = await scanArchive(resolve(positionals[0]));
  if (values.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return 0;
  }
  for (const s of report.series) {
    process.stdout.write(
      `${s.dir}\n  ${s.rows}x${s.columns}, ${s.slices} slices, spacing ${s.sliceSpacing.toFixed(2)} mm, ` +
        `HU min ${s.huMin} max ${s.huMax} mean ${s.huMean.toFixed(1)}\n`,
    );
  }
  for (const skipped of report.skipped) process.stdout.write(`skipped ${skipped.path}: ${skipped.reason}\n`);
  process.stdout.write(`${report.series.length} series, ${report.skipped.length} files skipped\n`);
  return 0;
}
