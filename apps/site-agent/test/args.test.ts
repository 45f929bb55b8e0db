import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseDecodeThreads, positiveInteger, UsageError } from '../src/commands/args';

describe('integer flags', () => {
  it.each(['0', '-1', 'abc', '1.5', '', '1e3', '0x10', ' 2', '2.0', '99999999999999999999'])('rejects "%s"', (value) => {
    expect(() => positiveInteger(value, 'slices')).toThrow(UsageError);
    expect(() => positiveInteger(value, 'slices')).toThrow(`--slices must be a positive integer, got "${value}"`);
  });

  it('reads decimal digits', () => {
    expect(positiveInteger('12', 'slices')).toBe(12);
    expect(positiveInteger(undefined, 'slices', 3)).toBe(3);
  });

  it('bounds --decode-threads at two per core', () => {
    const max = 2 * availableParallelism();
    expect(parseDecodeThreads(undefined)).toBe(availableParallelism());
    expect(parseDecodeThreads(String(max))).toBe(max);
    expect(() => parseDecodeThreads(String(max + 1))).toThrow(`--decode-threads must be at most ${max} (two per core), got ${max + 1}`);
  });
});
