import { resolve } from 'node:path';
import { defaultCacheDir } from '../archive/cache-dir';
import { SiteArchive } from '../archive/site-archive';
import { FederationAgent } from '../federation/agent';
import { AgentStatus } from '../federation/agent-status';
import { log } from '../log';
import { AGENT_VERSION } from '../version';
import { parseCommand, UsageError } from './args';
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
  seed: { type: 'string', default: '0' },
} as const;

/** Environment variables the agent reads: its token (instead of --token) and its log level. */
export const AGENT_ENVIRONMENT = ['COVNET_SITE_TOKEN', 'COVNET_LOG_LEVEL'] as const;

/**
 * `run --coordinator URL --token T --archive DIR [--audit-log FILE] [--status-file FILE] [--cache-dir DIR] [--seed S]`:
 * joins the federation and serves rounds until the coordinator ends it. Preprocessed
 * exams are cached in --cache-dir (default ~/.cache/covnet-site-agent), so a restarted
 * agent reads no DICOM file of an unchanged exam again.
 * The token may come from COVNET_SITE_TOKEN instead of the command line,
 * where other users of the machine could read it in the process list.
 */
export async function runCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseCommand(args, RUN_OPTIONS);
  const token = values.token ?? env.COVNET_SITE_TOKEN;
  if (!values.coordinator) throw new UsageError('--coordinator URL is required');
  if (!token) throw new UsageError('--token T (or COVNET_SITE_TOKEN) is required');
  if (!values.archive) throw new UsageError('--archive DIR is required');

  const cacheDir = resolve(values['cache-dir'] ?? defaultCacheDir());
  const archive = await SiteArchive.open(resolve(values.archive), { cacheDir });
  const backendChoice = await chooseAndLogBackend();
  const agent = new FederationAgent({
    coordinatorUrl: values.coordinator,
    token,
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
