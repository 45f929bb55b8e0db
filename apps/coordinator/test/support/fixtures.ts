import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import type { Logger } from 'pino';
import { createTestDatabase, type TestDatabase } from './test-database';
import { encodeWeights, type NamedTensor } from '@covnet/protocol';
import { loadConfig, startCoordinator, type RunningCoordinator } from '../../src';

/** Admin token of every test coordinator. */
export const ADMIN_TOKEN = 'admin-token-of-the-tests-0123';

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
  database: TestDatabase;
  coordinator: RunningCoordinator;
  baseUrl: string;
  initialPayload: Buffer;
  /**
   * Closes the coordinator and starts a new one on the same database; `coordinator` and `baseUrl` change.
   * With `dataDir`, the new one runs on that folder (a moved or copied data dir): every
   * flag that named a file in the old data dir names the same file in the new one.
   * With `experiment`, the new one runs that experiment instead of `test`.
   */
  restart(options?: { dataDir?: string; logger?: Logger; experiment?: string }): Promise<void>;
  cleanup(): Promise<void>;
}

export interface FixtureOptions {
  rounds?: number;
  minSites?: number;
  roundTimeoutS?: number;
  chunkBytes?: number;
  /** e.g. DATABASE_URL to run against PostgreSQL instead of SQLite. */
  env?: Record<string, string>;
  /** Text of a consortium file, written as consortium.yaml; it replaces the round and training flags. */
  consortiumYaml?: string;
  /** Leave out `--experiment test`, so that every experiment of the consortium file runs. */
  allExperiments?: boolean;
  /** Writes further files into the data dir before the coordinator starts. */
  beforeStart?: (dataDir: string) => Promise<void>;
  /** Further command-line flags, e.g. the TLS files. */
  args?: string[];
  /** Logger of the coordinator; by default pino on stderr at TEST_LOG_LEVEL (default silent). */
  logger?: Logger;
}

/**
 * Starts a coordinator on 127.0.0.1 port 0 with a fresh data dir, three sites
 * and the test model, on SQLite or on a fresh PostgreSQL schema (see test-database.ts).
 */
export async function startFixture(options: FixtureOptions = {}): Promise<Fixture> {
  const dataDir = await mkdtemp(join(tmpdir(), 'coordinator-test-'));
  const database = await createTestDatabase(dataDir);
  const sitesFile = join(dataDir, 'sites.json');
  const sites = Object.entries(TOKENS).map(([name, token]) => ({
    name,
    tokenSha256: createHash('sha256').update(token).digest('hex'),
  }));
  await writeFile(sitesFile, JSON.stringify({ sites }));
  const initialPayload = encodeWeights(initialTensors(), 'float32', INITIAL_META);
  const initialModel = join(dataDir, 'initial.cvnw');
  await writeFile(initialModel, initialPayload);

  let roundFlags = [
    '--rounds', String(options.rounds ?? 1),
    '--min-sites', String(options.minSites ?? 2),
    '--round-timeout-s', String(options.roundTimeoutS ?? 30),
    '--epochs', '2',
    '--learning-rate', '0.01',
    '--batch-size', '2',
    '--proximal-mu', '0',
  ];
  if (options.consortiumYaml !== undefined) {
    const consortiumFile = join(dataDir, 'consortium.yaml');
    await writeFile(consortiumFile, options.consortiumYaml);
    roundFlags = ['--experiments', consortiumFile];
  }
  await options.beforeStart?.(dataDir);
  const args = [
      '--port', '0',
      '--data-dir', dataDir,
      '--sites', sitesFile,
      '--initial-model', initialModel,
      ...(options.allExperiments ? [] : ['--experiment', 'test']),
      '--chunk-bytes', String(options.chunkBytes ?? 64),
      ...roundFlags,
      ...(options.args ?? []),
  ];
  const env = { LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', COVNET_ADMIN_TOKEN: ADMIN_TOKEN, ...database.env, ...options.env };
  const config = loadConfig(args, env);
  let coordinator: RunningCoordinator;
  try {
    coordinator = await startCoordinator(config, options.logger);
  } catch (error) {
    await database.drop();
    throw error;
  }
  // The federation may not finish in a test; its rejection at close is expected.
  coordinator.done.catch(() => {});
  const fixture: Fixture = {
    dataDir,
    database,
    coordinator,
    baseUrl: `${coordinator.scheme}://127.0.0.1:${coordinator.port}`,
    initialPayload,
    restart: async (restartOptions = {}) => {
      await fixture.coordinator.close();
      let restartConfig = config;
      if (restartOptions.dataDir !== undefined || restartOptions.experiment !== undefined) {
        const newDir = restartOptions.dataDir ?? dataDir;
        const newArgs = args.map((arg) => (arg.startsWith(dataDir) ? newDir + arg.slice(dataDir.length) : arg));
        const experimentAt = newArgs.indexOf('--experiment');
        if (restartOptions.experiment !== undefined && experimentAt >= 0) newArgs[experimentAt + 1] = restartOptions.experiment;
        restartConfig = loadConfig(newArgs, env);
        fixture.dataDir = newDir;
      }
      fixture.coordinator = await startCoordinator(restartConfig, restartOptions.logger);
      fixture.coordinator.done.catch(() => {});
      fixture.baseUrl = `http://127.0.0.1:${fixture.coordinator.port}`;
    },
    cleanup: async () => {
      await fixture.coordinator.close();
      await database.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  return fixture;
}

/** GETs a URL with the admin token, or with `token` (null for none), and parses the JSON body. */
export async function getJson(url: string, token: string | null = ADMIN_TOKEN): Promise<{ status: number; body: any }> {
  const response = await fetch(url, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });
  return { status: response.status, body: await response.json() };
}

/** Sends a JSON request with the admin token, or with `token` (null for none). */
export async function sendJson(method: string, url: string, body?: unknown, token: string | null = ADMIN_TOKEN): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json' };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  return { status: response.status, body: text === '' ? null : JSON.parse(text) };
}

/**
 * Runs one SQL query against a fixture's database, outside the coordinator's
 * connection. Use `$1`-style parameters only where both databases accept them.
 */
export async function queryDatabase<T>(fixture: Fixture, sql: string, parameters: unknown[] = []): Promise<T[]> {
  const dataSource = new DataSource(fixture.database.dataSourceOptions);
  await dataSource.initialize();
  try {
    return await dataSource.query(sql, parameters);
  } finally {
    await dataSource.destroy();
  }
}
