import { availableParallelism } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';

type OptionsConfig = NonNullable<ParseArgsConfig['options']>;

/** Error in the command line: printed with the usage, exit code 2. */
export class UsageError extends Error {}

/** Parses a command's flags strictly; an unknown flag or a missing value is a UsageError. */
export function parseCommand<const O extends OptionsConfig>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true as const, strict: true as const });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** Reads a flag as a positive integer. @throws UsageError naming the flag. */
export function positiveInteger(value: string | undefined, flag: string, fallback?: number): number {
  if (value === undefined) {
    if (fallback === undefined) throw new UsageError(`--${flag} is required`);
    return fallback;
  }
  // Decimal digits only: Number() would also take "1e3", "0x10" and " 2".
  const n = /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`--${flag} must be a positive integer, got "${value}"`);
  return n;
}

// Decoding is CPU-bound, so threads beyond the cores add memory and no speed.
const MAX_DECODE_THREADS_PER_CORE = 2;

/**
 * Reads --decode-threads: worker threads that decode DICOM, one per core unless set, at most
 * two per core. @throws UsageError naming the flag.
 */
export function parseDecodeThreads(value: string | undefined): number {
  const threads = positiveInteger(value, 'decode-threads', availableParallelism());
  const max = MAX_DECODE_THREADS_PER_CORE * availableParallelism();
  if (threads > max) throw new UsageError(`--decode-threads must be at most ${max} (two per core), got ${threads}`);
  return threads;
}
