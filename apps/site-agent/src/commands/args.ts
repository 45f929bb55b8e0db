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
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${flag} must be a positive integer, got "${value}"`);
  return n;
}

/** Reads --decode-threads: worker threads that decode DICOM, one per core unless set. @throws UsageError. */
export function parseDecodeThreads(value: string | undefined): number {
  return positiveInteger(value, 'decode-threads', availableParallelism());
}
