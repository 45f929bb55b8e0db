import { resolve } from 'node:path';
import { writeSyntheticArchive } from '@covnet/imaging';
import { parseCommand, positiveInteger, UsageError } from './args';

/** `synth OUT_DIR --exams N --seed S [--rows R]`: writes a synthetic CT archive as DICOM files with labels.csv. */
export async function synthCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    exams: { type: 'string' },
    seed: { type: 'string', default: '1' },
    rows: { type: 'string', default: '128' },
    'val-fraction': { type: 'string', default: '0.3' },
  });
  if (positionals.length !== 1) throw new UsageError('synth takes one output folder: synth OUT_DIR --exams N --seed S');
  const valFraction = Number(values['val-fraction']);
  if (!(valFraction >= 0 && valFraction < 1)) throw new UsageError(`--val-fraction must be in [0, 1), got "${values['val-fraction']}"`);
  const seed = Number(values.seed);
  if (!Number.isInteger(seed)) throw new UsageError(`--seed must be an integer, got "${values.seed}"`);
  const result = await writeSyntheticArchive(resolve(positionals[0]), {
    exams: positiveInteger(values.exams, 'exams'),
    seed,
    rows: positiveInteger(values.rows, 'rows'),
    valFraction,
  });
  process.stdout.write(`wrote ${result.exams.length} exams to ${resolve(positionals[0])}\n`);
  return 0;
}
