import { resolve } from 'node:path';
import { z } from 'zod';
import { MAX_CHUNK_BYTES } from '@covnet/protocol';
import type { Strategy } from '../experiments/experiment-settings';
import type { AggregationRule } from '../aggregation/aggregator';

/** Injection token of the validated `CoordinatorConfig`. */
export const COORDINATOR_CONFIG = Symbol('COORDINATOR_CONFIG');

export type DatabaseConfig =
  | { type: 'sqlite'; path: string }
  | { type: 'postgres'; url: string };

export interface CoordinatorConfig {
  host: string;
  /** TCP port; 0 lets the operating system choose one. */
  port: number;
  dataDir: string;
  /** JSON file of sites upserted at start; null when sites are managed only with `sites add`. */
  sitesFile: string | null;
  initialModelFile: string;
  /** Whether the experiment's settings name `initialModelFile`, so that it is stored with them; absent means no. */
  initialModelNamed?: boolean;
  experiment: string;
  rounds: number;
  /** Minimum number of sites needed to start a round and to close it at the deadline. */
  minSites: number;
  roundTimeoutS: number;
  epochs: number;
  learningRate: number;
  batchSize: number;
  proximalMu: number;
  /** Bytes per chunk of the global model sent to sites. */
  chunkBytes: number;
  /** Consortium file (JSON or YAML) whose experiment `experiment` sets the round settings; null when flags set them. */
  experimentsFile: string | null;
  /** Whether --experiment was given, so that a consortium file's only experiment can be the default. */
  experimentGiven: boolean;
  /** Whether any round or training flag was given; without them a stored experiment's settings apply. */
  roundFlagsGiven: boolean;
  /** Share of the ready sites asked to train in each round; 1 with flags. */
  fractionPerRound: number;
  /** Evaluate every k rounds (the last round always); 1 with flags. */
  evaluateEvery: number;
  strategy: Strategy;
  /** Rule that combines a round's updates into the next model; fedavg with flags. */
  aggregation: AggregationRule;
  /** Largest L2 distance of an update from the global model; null for no bound. */
  maxUpdateNorm: number | null;
  /** Largest L2 distance as a multiple of the previous round's median distance; null for no bound. */
  maxUpdateNormRatio: number | null;
  /** Backbone and input size the initial model must have; null to accept any. */
  backbone: string | null;
  inputSize: number | null;
  exitWhenDone: boolean;
  /** With `exitWhenDone`, seconds to wait for the sites to acknowledge federation:done before exiting. */
  doneTimeoutS: number;
  database: DatabaseConfig;
  logLevel: string;
  /**
   * Bearer token of the REST API and the dashboard, from COVNET_ADMIN_TOKEN;
   * null makes the coordinator create one in `<data dir>/admin-token`.
   */
  adminToken: string | null;
  /** PEM certificate chain of the coordinator; with `tlsKeyFile` it serves HTTPS and WSS, else plain HTTP. */
  tlsCertFile: string | null;
  /** PEM private key of `tlsCertFile`. */
  tlsKeyFile: string | null;
  /** PEM consortium CA that client certificates must chain to; null requests no client certificate. */
  tlsCaFile: string | null;
  /** Whether the TLS handshake rejects a client without a certificate issued by `tlsCaFile` (mutual TLS). */
  tlsRequireClientCert: boolean;
}

type FlagKind = 'string' | 'int' | 'number' | 'boolean';

interface FlagSpec {
  key: keyof CoordinatorConfig;
  kind: FlagKind;
  help: string;
}

/** Every command-line flag, with what it sets; defaults live in the schema below. */
export const FLAGS: Record<string, FlagSpec> = {
  '--host': { key: 'host', kind: 'string', help: 'address to listen on (default 127.0.0.1)' },
  '--port': { key: 'port', kind: 'int', help: 'TCP port, 0 for any free port (default 8080)' },
  '--data-dir': { key: 'dataDir', kind: 'string', help: 'directory of the SQLite database and checkpoints (required)' },
  '--sites': { key: 'sitesFile', kind: 'string', help: 'JSON file {"sites":[{"name","tokenSha256"}]} of sites to add or update at start (optional; see `sites add`)' },
  '--initial-model': { key: 'initialModelFile', kind: 'string', help: 'weights in the CVNW codec format, used as model version 0 (required)' },
  '--experiment': { key: 'experiment', kind: 'string', help: 'experiment name (default "default")' },
  '--rounds': { key: 'rounds', kind: 'int', help: 'number of training rounds (default 3)' },
  '--min-sites': { key: 'minSites', kind: 'int', help: 'sites needed to start and to close a round (default 2)' },
  '--round-timeout-s': { key: 'roundTimeoutS', kind: 'number', help: 'seconds each training and each evaluation phase may take (default 600)' },
  '--epochs': { key: 'epochs', kind: 'int', help: 'local epochs per round, sent to sites (default 1)' },
  '--learning-rate': { key: 'learningRate', kind: 'number', help: 'local learning rate, sent to sites (default 0.001)' },
  '--batch-size': { key: 'batchSize', kind: 'int', help: 'local batch size in exams, sent to sites (default 4)' },
  '--proximal-mu': { key: 'proximalMu', kind: 'number', help: 'FedProx proximal term, 0 for plain FedAvg, sent to sites (default 0)' },
  '--chunk-bytes': { key: 'chunkBytes', kind: 'int', help: `bytes per model chunk sent to sites (default and maximum ${MAX_CHUNK_BYTES})` },
  '--experiments': {
    key: 'experimentsFile',
    kind: 'string',
    help: 'consortium file (JSON or YAML) of experiment settings; --experiment picks one (default: the only one); replaces the round and training flags',
  },
  '--exit-when-done': { key: 'exitWhenDone', kind: 'boolean', help: 'exit with status 0 after the last round instead of serving the API' },
  '--done-timeout-s': {
    key: 'doneTimeoutS',
    kind: 'number',
    help: 'with --exit-when-done, seconds to wait for every site that took part to acknowledge federation:done before exiting (default 60)',
  },
  '--tls-cert': { key: 'tlsCertFile', kind: 'string', help: 'PEM certificate chain; with --tls-key the coordinator serves HTTPS and WSS (or COVNET_TLS_CERT)' },
  '--tls-key': { key: 'tlsKeyFile', kind: 'string', help: 'PEM private key of --tls-cert (or COVNET_TLS_KEY)' },
  '--tls-ca': { key: 'tlsCaFile', kind: 'string', help: 'PEM consortium CA; client certificates are requested and checked against it (or COVNET_TLS_CA)' },
  '--tls-require-client-cert': {
    key: 'tlsRequireClientCert',
    kind: 'boolean',
    help: 'reject every TLS client without a certificate issued by --tls-ca, REST and dashboard included (or COVNET_TLS_REQUIRE_CLIENT_CERT=true)',
  },
};

const positiveInt = z.number().int().positive();

const configSchema = z.object({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(8080),
  dataDir: z.string({ required_error: 'is required' }).min(1),
  sitesFile: z.string().min(1).optional(),
  initialModelFile: z.string({ required_error: 'is required' }).min(1),
  experiment: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected 1-64 letters, digits, dot, dash or underscore')
    .default('default'),
  rounds: positiveInt.max(10_000).default(3),
  minSites: positiveInt.default(2),
  roundTimeoutS: z.number().positive().default(600),
  epochs: positiveInt.max(1000).default(1),
  learningRate: z.number().positive().max(10).default(0.001),
  batchSize: positiveInt.max(4096).default(4),
  proximalMu: z.number().nonnegative().max(100).default(0),
  chunkBytes: positiveInt.max(MAX_CHUNK_BYTES).default(MAX_CHUNK_BYTES),
  exitWhenDone: z.boolean().default(false),
  doneTimeoutS: z.number().nonnegative().max(3600).default(60),
  experimentsFile: z.string().min(1).optional(),
  tlsCertFile: z.string().min(1).optional(),
  tlsKeyFile: z.string().min(1).optional(),
  tlsCaFile: z.string().min(1).optional(),
  tlsRequireClientCert: z.boolean().default(false),
});

/** Flags that a consortium file replaces. */
const ROUND_FLAGS = ['--rounds', '--min-sites', '--round-timeout-s', '--epochs', '--learning-rate', '--batch-size', '--proximal-mu'];

const KEY_TO_FLAG = new Map(Object.entries(FLAGS).map(([flag, spec]) => [spec.key as string, flag]));

/** Environment variables the coordinator and its image's health check read. */
export const ENVIRONMENT_VARIABLES = [
  'DATABASE_URL',
  'LOG_LEVEL',
  'COVNET_ADMIN_TOKEN',
  'COVNET_TLS_CERT',
  'COVNET_TLS_KEY',
  'COVNET_TLS_CA',
  'COVNET_TLS_REQUIRE_CLIENT_CERT',
  // The client certificate of the health check, for coordinators that require one.
  'COVNET_HEALTH_CERT',
  'COVNET_HEALTH_KEY',
] as const;

/** Environment variable read for each TLS setting when its flag is absent. */
const TLS_ENVIRONMENT: Partial<Record<keyof CoordinatorConfig, string>> = {
  tlsCertFile: 'COVNET_TLS_CERT',
  tlsKeyFile: 'COVNET_TLS_KEY',
  tlsCaFile: 'COVNET_TLS_CA',
  tlsRequireClientCert: 'COVNET_TLS_REQUIRE_CLIENT_CERT',
};

/** Thrown for an invalid command line or environment; the message names the flag or variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Reads the coordinator's configuration from command-line flags (`--flag value`
 * or `--flag=value`) and from the environment variables in ENVIRONMENT_VARIABLES.
 * A TLS flag takes precedence over its environment variable.
 * Relative paths are resolved against the current directory.
 * @param argv arguments after the script name, e.g. `process.argv.slice(2)`.
 * @throws ConfigError naming the first unknown, repeated or invalid flag.
 */
export function loadConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): CoordinatorConfig {
  const raw: Record<string, unknown> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const spec = FLAGS[flag];
    if (!spec) throw new ConfigError(`unknown argument ${arg}; valid flags: ${Object.keys(FLAGS).join(', ')}`);
    if (spec.key in raw) throw new ConfigError(`flag ${flag} is given twice`);

    if (spec.kind === 'boolean') {
      if (eq > 0) throw new ConfigError(`flag ${flag} takes no value`);
      raw[spec.key] = true;
      continue;
    }
    let value: string | undefined;
    if (eq > 0) {
      value = arg.slice(eq + 1);
    } else {
      value = argv[i + 1];
      i += 1;
    }
    if (value === undefined || (eq < 0 && value.startsWith('--'))) {
      throw new ConfigError(`flag ${flag} needs a value: ${spec.help}`);
    }
    raw[spec.key] = spec.kind === 'string' ? value : parseNumber(flag, value, spec.kind);
  }
  readTlsEnvironment(raw, env);

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue.path[0]);
    const flag = KEY_TO_FLAG.get(key) ?? key;
    throw new ConfigError(`flag ${flag}: ${issue.message} (${FLAGS[flag]?.help ?? ''})`);
  }
  const values = parsed.data;
  if (values.experimentsFile !== undefined) {
    const clashing = ROUND_FLAGS.filter((flag) => FLAGS[flag].key in raw);
    if (clashing.length > 0) throw new ConfigError(`${clashing.join(', ')} cannot be combined with --experiments: set them in the consortium file`);
  }
  const dataDir = resolve(values.dataDir);
  checkTlsCombination(values);

  return {
    ...values,
    dataDir,
    sitesFile: values.sitesFile === undefined ? null : resolve(values.sitesFile),
    experimentsFile: values.experimentsFile === undefined ? null : resolve(values.experimentsFile),
    experimentGiven: 'experiment' in raw,
    roundFlagsGiven: ROUND_FLAGS.some((flag) => FLAGS[flag].key in raw),
    fractionPerRound: 1,
    evaluateEvery: 1,
    strategy: values.proximalMu > 0 ? { name: 'fedprox', mu: values.proximalMu } : { name: 'fedavg' },
    aggregation: { name: 'fedavg' },
    maxUpdateNorm: null,
    maxUpdateNormRatio: null,
    backbone: null,
    inputSize: null,
    initialModelFile: resolve(values.initialModelFile),
    database: databaseFromEnv(env.DATABASE_URL, dataDir),
    logLevel: logLevelFromEnv(env.LOG_LEVEL),
    adminToken: adminTokenFromEnv(env.COVNET_ADMIN_TOKEN),
    tlsCertFile: values.tlsCertFile === undefined ? null : resolve(values.tlsCertFile),
    tlsKeyFile: values.tlsKeyFile === undefined ? null : resolve(values.tlsKeyFile),
    tlsCaFile: values.tlsCaFile === undefined ? null : resolve(values.tlsCaFile),
  };
}

/** Fills the TLS settings that no flag gave from their environment variables. */
function readTlsEnvironment(raw: Record<string, unknown>, env: Readonly<Record<string, string | undefined>>): void {
  for (const [key, variable] of Object.entries(TLS_ENVIRONMENT)) {
    const value = env[variable];
    if (key in raw || value === undefined || value === '') continue;
    if (key !== 'tlsRequireClientCert') {
      raw[key] = value;
    } else if (value === 'true' || value === '1') {
      raw[key] = true;
    } else if (value !== 'false' && value !== '0') {
      throw new ConfigError(`${variable} "${value}" is invalid; expected true, false, 1 or 0`);
    }
  }
}

/** Rejects TLS settings that only make sense together. */
function checkTlsCombination(values: { tlsCertFile?: string; tlsKeyFile?: string; tlsCaFile?: string; tlsRequireClientCert: boolean }): void {
  if ((values.tlsCertFile === undefined) !== (values.tlsKeyFile === undefined)) {
    throw new ConfigError('--tls-cert and --tls-key (COVNET_TLS_CERT, COVNET_TLS_KEY) must be given together');
  }
  if (values.tlsCaFile !== undefined && values.tlsCertFile === undefined) {
    throw new ConfigError('--tls-ca needs --tls-cert and --tls-key: client certificates are checked only over TLS');
  }
  if (values.tlsRequireClientCert && values.tlsCaFile === undefined) {
    throw new ConfigError('--tls-require-client-cert needs --tls-ca, the consortium CA that issues the client certificates');
  }
}

/** Shortest admin token accepted: 16 characters, e.g. 12 random bytes in base64. */
export const MIN_ADMIN_TOKEN_LENGTH = 16;

function adminTokenFromEnv(token: string | undefined): string | null {
  if (token === undefined || token === '') return null;
  if (token.length < MIN_ADMIN_TOKEN_LENGTH) {
    throw new ConfigError(`COVNET_ADMIN_TOKEN has ${token.length} characters, expected at least ${MIN_ADMIN_TOKEN_LENGTH}; generate one with: openssl rand -base64 24`);
  }
  return token;
}

function parseNumber(flag: string, value: string, kind: 'int' | 'number'): number {
  const trimmed = value.trim();
  const number = trimmed === '' ? NaN : Number(trimmed);
  if (!Number.isFinite(number) || (kind === 'int' && !Number.isInteger(number))) {
    throw new ConfigError(`flag ${flag}: "${value}" is not ${kind === 'int' ? 'an integer' : 'a number'}`);
  }
  return number;
}

/** Chooses the database from DATABASE_URL: PostgreSQL when set, else SQLite in `dataDir`. */
export function databaseFromEnv(url: string | undefined, dataDir: string): DatabaseConfig {
  if (url === undefined || url === '') return { type: 'sqlite', path: resolve(dataDir, 'coordinator.sqlite') };
  if (/^postgres(ql)?:\/\//.test(url)) return { type: 'postgres', url };
  // The URL may carry a password, so only its scheme is echoed.
  throw new ConfigError(`DATABASE_URL has scheme "${url.split(':')[0]}": only postgres:// or postgresql:// is supported`);
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function logLevelFromEnv(level: string | undefined): string {
  if (level === undefined || level === '') return 'info';
  if (!LOG_LEVELS.includes(level)) throw new ConfigError(`LOG_LEVEL "${level}" is invalid; expected one of ${LOG_LEVELS.join(', ')}`);
  return level;
}
