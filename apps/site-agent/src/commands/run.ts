import { resolve } from 'node:path';
import { defaultCacheDir } from '../archive/cache-dir';
import { SiteArchive } from '../archive/site-archive';
import { FederationAgent } from '../federation/agent';
import { AgentStatus } from '../federation/agent-status';
import { AgentTlsError, readAgentTls } from '../federation/coordinator-socket';
import { log } from '../log';
import { AGENT_VERSION } from '../version';
import { parseCommand, parseDecodeThreads, UsageError } from './args';
import { gpuName } from './gpu-name';
import { chooseAndLogBackend } from './backend-choice';

/** Flags of `run`. */
export const RUN_OPTIONS = {
  coordinator: { type: 'string' },
  token: { type: 'string' },
  archive: { type: 'string' },
  'audit-log': { type: 'string' },
  'status-file': { type: 'string' },
  'cache-dir': { type: 'string' },
  'decode-threads': { type: 'string' },
  seed: { type: 'string', default: '0' },
  site: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
} as const;

/** Environment variables the agent reads: its token (instead of --token) and its log level. */
export const AGENT_ENVIRONMENT = ['COVNET_SITE_TOKEN', 'COVNET_LOG_LEVEL'] as const;

/**
 * `run --coordinator URL --token T --archive DIR [--site NAME] [--ca FILE] [--cert FILE --key FILE]
 * [--audit-log FILE] [--status-file FILE] [--cache-dir DIR] [--decode-threads N] [--seed S]`:
 * joins the federation and serves rounds until the coordinator ends it.
 * `--ca` is the consortium CA that the coordinator's certificate must chain to,
 * and `--cert`/`--key` the site's client certificate for mutual TLS. Preprocessed
 * exams are cached in --cache-dir (default ~/.cache/covnet-site-agent), so a restarted
 * agent reads no DICOM file of an unchanged exam again. DICOM series are decoded on
 * --decode-threads worker threads (default: one per core; 1 decodes on the main thread).
 * The token may come from COVNET_SITE_TOKEN instead of the command line,
 * where other users of the machine could read it in the process list.
 */
export async function runCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseCommand(args, RUN_OPTIONS);
  const token = values.token ?? env.COVNET_SITE_TOKEN;
  if (!values.coordinator) throw new UsageError('--coordinator URL is required');
  if (!token) throw new UsageError('--token T (or COVNET_SITE_TOKEN) is required');
  if (!values.archive) throw new UsageError('--archive DIR is required');
  let tls;
  try {
    tls = readAgentTls(values.coordinator, { ca: values.ca, cert: values.cert, key: values.key });
  } catch (error) {
    if (error instanceof AgentTlsError) throw new UsageError(error.message);
    throw error;
  }

  const cacheDir = resolve(values['cache-dir'] ?? defaultCacheDir());
  const decodeThreads = parseDecodeThreads(values['decode-threads']);
  const archive = await SiteArchive.open(resolve(values.archive), { cacheDir, decodeThreads });
  const backendChoice = await chooseAndLogBackend();
  const agent = new FederationAgent({
    coordinatorUrl: values.coordinator,
    token,
    site: values.site,
    tls,
    archive,
    backend: backendChoice.backend,
    gpu: backendChoice.rung === 'tensorflow-gpu' ? await gpuName() : undefined,
    agentVersion: AGENT_VERSION,
    auditLog: values['audit-log'] ? resolve(values['audit-log']) : undefined,
    seed: Number(values.seed),
    status: new AgentStatus(values.coordinator, values['status-file'] ? resolve(values['status-file']) : undefined),
  });
  const done = await agent.run();
  log.info({ rounds: done.rounds, messagesSent: agent.messagesSent }, 'agent finished');
  return 0;
}
