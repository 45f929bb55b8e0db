import type { ValueTransformer } from 'typeorm';

/**
 * Reads a 'bigint' column as a JavaScript number. The pg driver returns int8
 * as a string (it may exceed 2^53), while better-sqlite3 returns a number, so
 * without this the same row would have different types on the two databases.
 * @throws Error when a stored value is beyond Number.MAX_SAFE_INTEGER.
 */
export const bigintColumn: ValueTransformer = {
  to: (value: number | null | undefined) => value,
  from: (value: string | number | null) => {
    if (value === null || value === undefined) return null;
    const number = Number(value);
    if (!Number.isSafeInteger(number)) throw new Error(`bigint value ${value} is beyond the safe integer range of a JavaScript number`);
    return number;
  },
};
