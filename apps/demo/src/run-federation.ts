import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PerClassAuc } from '@covnet/protocol';
import { startProcess, type ManagedProcess } from './processes';
import type { RoundReport } from './report';
import type { SiteArchivePlan } from './synthetic-consortium';

export interface FederationPlan {
  workDir: string;
  sites: SiteArchivePlan[];
  initialModel: string;
  rounds: number;
  epochs: number;
  learningRate: number;
  batchSize: number;
  seed: number;
  /** Wall-clock limit of the whole federation, in seconds. */
  timeoutSeconds: number;
  onProgress?: (message: string) => void;
}

interface MetricsResponse {
  round: number;
  modelVersion: number;
  sites: { site: string; trainExams: number; valExams: number; auc: PerClassAuc }[];
  pooled: { valExams: number; auc: PerClassAuc };
}

interface RoundResponse {
  round: number;
  state: string;
}

/**
 * Runs a federation on this machine: one coordinator process and one agent
 * process per site, all on 127.0.0.1, each site with its own token. Returns
 * the per-round metrics read back from the coordinator's REST API.
 * @throws Error naming the process and its log file when any of them fails.
 */
export async function runFederation(plan: FederationPlan): Promise<{ rounds: RoundReport[]; coordinatorDataDir: string }> {
  const logs = join(plan.workDir, 'logs');
  await mkdir(logs, { recursive: true });
  const tokens = new Map(plan.sites.map((site) => [site.name, randomBytes(24).toString('base64url')]));
  const sitesFile = join(plan.workDir, 'sites.json');
  await writeFile(
    sitesFile,
    JSON.stringify(
      { sites: [...tokens].map(([name, token]) => ({ name, tokenSha256: createHash('sha256').update(token).digest('hex') })) },
      null,
      2,
    ),
  );

  const dataDir = join(plan.workDir, 'coordinator');
  // The REST API needs the admin token for reads too.
  const adminToken = randomBytes(24).toString('base64url');
  let announce: (url: string) => void;
  const listening = new Promise<string>((resolve) => (announce = resolve));
  const coordinator = startProcess(
    'coordinator',
    'apps/coordinator/src/main.ts',
    [
      '--port', '0',
      '--data-dir', dataDir,
      '--sites', sitesFile,
      '--initial-model', plan.initialModel,
      '--rounds', String(plan.rounds),
      '--min-sites', String(plan.sites.length),
      '--round-timeout-s', String(plan.timeoutSeconds),
      '--epochs', String(plan.epochs),
      '--learning-rate', String(plan.learningRate),
      '--batch-size', String(plan.batchSize),
    ],
    join(logs, 'coordinator.log'),
    { COVNET_ADMIN_TOKEN: adminToken },
    (line) => {
      const match = /coordinator listening on (http:\/\/\S+)/.exec(line);
      if (match) announce(match[1]);
    },
  );
  const agents: ManagedProcess[] = [];
  try {
    const url = await withTimeout(listening, 60_000, coordinator, 'the coordinator did not start listening within 60 s');
    plan.onProgress?.(`coordinator listening on ${url}`);

    for (const site of plan.sites) {
      agents.push(
        startProcess(
          site.name,
          'apps/site-agent/src/main.ts',
          ['run', '--coordinator', url, '--archive', site.archive, '--audit-log', join(plan.workDir, 'sites', site.name, 'sent.jsonl'),
            '--cache-dir', join(plan.workDir, 'sites', site.name, 'cache'), '--seed', String(plan.seed),
            // Six agents share the machine, so each decodes on its own main thread.
            '--decode-threads', '1'],
          join(logs, `${site.name}.log`),
          { COVNET_SITE_TOKEN: tokens.get(site.name)! },
        ),
      );
    }

    const finished = Promise.all(
      agents.map(async (agent) => {
        const code = await agent.exited;
        if (code !== 0) throw new Error(`agent ${agent.name} exited with code ${code}; see ${agent.logFile}`);
      }),
    );
    const coordinatorDied = coordinator.exited.then((code) => {
      throw new Error(`the coordinator exited early with code ${code}; see ${coordinator.logFile}`);
    });
    const progress = watchRounds(url, adminToken, plan.onProgress);
    try {
      await Promise.race([finished, coordinatorDied, deadline(plan.timeoutSeconds * 1000, logs)]);
    } finally {
      progress.stop();
    }

    const rounds: RoundReport[] = [];
    for (let round = 1; round <= plan.rounds; round++) {
      const metrics = (await getJson(`${url}/api/rounds/${round}/metrics`, adminToken)) as MetricsResponse;
      rounds.push({
        round: metrics.round,
        modelVersion: metrics.modelVersion,
        sites: [...metrics.sites].sort((a, b) => a.site.localeCompare(b.site)),
        pooled: metrics.pooled,
      });
    }
    return { rounds, coordinatorDataDir: dataDir };
  } finally {
    for (const agent of agents) agent.child.kill('SIGTERM');
    coordinator.child.kill('SIGTERM');
    await Promise.all([coordinator.exited, ...agents.map((a) => a.exited)]);
  }
}

async function getJson(url: string, adminToken: string): Promise<unknown> {
  const response = await fetch(url, { headers: { authorization: `Bearer ${adminToken}` } });
  if (!response.ok) throw new Error(`GET ${url} failed: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

function deadline(ms: number, logs: string): Promise<never> {
  return new Promise((_, reject) => {
    const timer = setTimeout(() => reject(new Error(`the federation did not finish within ${ms / 1000} s; logs are in ${logs}`)), ms);
    timer.unref();
  });
}

async function withTimeout<T>(promise: Promise<T>, ms: number, process: ManagedProcess, message: string): Promise<T> {
  const exited = process.exited.then((code) => {
    throw new Error(`${process.name} exited with code ${code} before it was ready; see ${process.logFile}`);
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message}; see ${process.logFile}`)), ms);
  });
  try {
    return await Promise.race([promise, exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// Prints each round's state changes, read from the REST API every two seconds.
function watchRounds(url: string, adminToken: string, onProgress?: (message: string) => void): { stop(): void } {
  const seen = new Map<number, string>();
  const timer = setInterval(() => {
    getJson(`${url}/api/rounds`, adminToken)
      .then((rounds) => {
        for (const r of rounds as RoundResponse[]) {
          if (seen.get(r.round) !== r.state) {
            seen.set(r.round, r.state);
            onProgress?.(`round ${r.round}: ${r.state}`);
          }
        }
      })
      .catch(() => undefined);
  }, 2000);
  return { stop: () => clearInterval(timer) };
}
