import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { DataSource, type DataSourceOptions } from 'typeorm';

/**
 * Database of the coordinator tests, chosen by COORDINATOR_TEST_DATABASE:
 * `sqlite` (default) or `postgres`, the latter on TEST_POSTGRES_URL
 * (default postgres://postgres@127.0.0.1:5432/test).
 */
export const TEST_DATABASE = process.env.COORDINATOR_TEST_DATABASE === 'postgres' ? 'postgres' : 'sqlite';
export const TEST_POSTGRES_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestDatabase {
  /** Environment that points a coordinator at this database. */
  env: Record<string, string>;
  /** Options of a separate connection for assertions. */
  dataSourceOptions: DataSourceOptions;
  drop(): Promise<void>;
}

/**
 * Creates the database of one test coordinator: SQLite in `dataDir`, or a
 * PostgreSQL schema of a random name, so that parallel runs never share rows.
 */
export async function createTestDatabase(dataDir: string): Promise<TestDatabase> {
  if (TEST_DATABASE === 'sqlite') {
    return {
      env: {},
      dataSourceOptions: { type: 'better-sqlite3', database: join(dataDir, 'coordinator.sqlite'), readonly: true },
      drop: async () => {},
    };
  }
  const schema = `coordinator_test_${randomBytes(6).toString('hex')}`;
  await withServer((server) => server.query(`CREATE SCHEMA ${schema}`));
  const url = new URL(TEST_POSTGRES_URL);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return {
    env: { DATABASE_URL: url.toString() },
    dataSourceOptions: { type: 'postgres', url: url.toString() },
    drop: () => withServer((server) => server.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)),
  };
}

async function withServer<T>(work: (server: DataSource) => Promise<T>): Promise<T> {
  const server = new DataSource({ type: 'postgres', url: TEST_POSTGRES_URL });
  await server.initialize();
  try {
    return await work(server);
  } finally {
    await server.destroy();
  }
}
