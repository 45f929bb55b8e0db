import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { encodeWeights, type NamedTensor } from '@covnet/protocol';
import { loadConfig, startCoordinator, type RunningCoordinator } from '../../src';

export const TOKENS = { 'site-a': 'token-of-site-a', 'site-b': 'token-of-site-b', 'site-c': 'token-of-site-c' } as const;
export type SiteName = keyof typeof TOKENS;

/** Metadata of the test model, carried over into every aggregated checkpoint. */
export const INITIAL_META = { backbone: 'test-tiny' };

/** Returns the three-tensor test model, all zeros, which float32 represents exactly. */
export function initialTensors(): NamedTensor[] {
  return [
    { name: 'dense/kernel', shape: [2, 3], data: new Float32Array([0, 0, 0, 0, 0, 0]) },
    { name: 'dense/bias', shape: [3], data: new Float32Array([0, 0, 0]) },
    { name: 'bn/moving_mean', shape: [3], data: new Float32Array([0, 0, 0]) },
  ];
}

export interface Fixture {
  dataDir: string;
  coordinator: RunningCoordinator;
  baseUrl: string;
  initialPayload: Buffer;
  cleanup(): Promise<void>;
}

export interface FixtureOptions {
  rounds?: number;
  minSites?: number;
  roundTimeoutS?: number;
  chunkBytes?: number;
  /** e.g. DATABASE_URL to run against PostgreSQL instead of SQLite. */
  env?: Record<string, string>;
}

/** Starts a coordinator on 127.0.0.1 port 0 with a fresh data dir, three sites and the test model. */
export async function startFixture(options: FixtureOptions = {}): Promise<Fixture> {
  const dataDir = await mkdtemp(join(tmpdir(), 'coordinator-test-'));
  const sitesFile = join(dataDir, 'sites.json');
  const sites = Object.entries(TOKENS).map(([name, token]) => ({
    name,
    tokenSha256: createHash('sha256').update(token).digest('hex'),
  }));
  await writeFile(sitesFile, JSON.stringify({ sites }));
  const initialPayload = encodeWeights(initialTensors(), 'float32', INITIAL_META);
  const initialModel = join(dataDir, 'initial.cvnw');
  await writeFile(initialModel, initialPayload);

  const config = loadConfig(
    [
      '--port', '0',
      '--data-dir', dataDir,
      '--sites', sitesFile,
      '--initial-model', initialModel,
      '--experiment', 'test',
      '--rounds', String(options.rounds ?? 1),
      '--min-sites', String(options.minSites ?? 2),
      '--round-timeout-s', String(options.roundTimeoutS ?? 30),
      '--chunk-bytes', String(options.chunkBytes ?? 64),
      '--epochs', '2',
      '--learning-rate', '0.01',
      '--batch-size', '2',
      '--proximal-mu', '0',
    ],
    { LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', ...options.env },
  );
  const coordinator = await startCoordinator(config);
  // The federation may not finish in a test; its rejection at close is expected.
  coordinator.done.catch(() => {});
  return {
    dataDir,
    coordinator,
    baseUrl: `http://127.0.0.1:${coordinator.port}`,
    initialPayload,
    cleanup: async () => {
      await coordinator.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export async function getJson(url: string): Promise<{ status: number; body: any }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() };
}

/** Runs one SQL query against a fixture's SQLite database, outside the coordinator's connection. */
export async function queryDatabase<T>(dataDir: string, sql: string, parameters: unknown[] = []): Promise<T[]> {
  const dataSource = new DataSource({ type: 'better-sqlite3', database: join(dataDir, 'coordinator.sqlite'), readonly: true });
  await dataSource.initialize();
  try {
    return await dataSource.query(sql, parameters);
  } finally {
    await dataSource.destroy();
  }
}
