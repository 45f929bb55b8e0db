import type { ValueTransformer } from 'typeorm';

/**
 * Stores a JSON value in a 'text' column. Plain text rather than a native JSON
 * type keeps one schema valid on both SQLite and PostgreSQL.
 */
export const jsonColumn: ValueTransformer = {
  to: (value: unknown) => (value === undefined || value === null ? null : JSON.stringify(value)),
  from: (value: string | null) => (value === null || value === undefined ? null : JSON.parse(value)),
};
