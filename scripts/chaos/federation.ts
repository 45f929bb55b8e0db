import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { encodeWeights, type NamedTensor } from '@covnet/protocol';
import { startProcess, type ManagedProcess } from '../../apps/demo/src/processes';
import type { LightAgentOptions } from './light-agent';

/** Admin token of the coordinators these scripts start. */
export const ADMIN_TOKEN = 'admin-token-of-the-chaos-run';

/** Metadata of the light model, carried into every checkpoint. */
export const LIGHT_MODEL_META = { backbone: 'light' };

export interface SiteCredentials {
  name: string;
  token: string;
}

/** Files and address of a federation on 127.0.0.1 whose processes a script starts and kills. */
export interface LocalFederation {
  workDir: string;
  dataDir: string;
  port: number;
  url: string;
  sitesFile: string;
  initialModelFile: string;
  sentDir: string;
  ackLog: string;
  sites: SiteCredentials[];
}

/**
 * Returns a light model of `parameters` float32 values in two tensors,
 * drawn from a fixed pattern so that every run starts from the same bytes.
 * @throws Error unless `parameters` is a multiple of 16 above 16.
 */
export function lightModel(parameters: number): NamedTensor[] {
  if (parameters % 16 !== 0 || parameters <= 16) throw new Error(`model size ${parameters} must be a multiple of 16 above 16`);
  const biasLength = 16;
  const kernel = new Float32Array(parameters - biasLength);
  for (let i = 0; i < kernel.length; i++) kernel[i] = Math.sin(i) * 0.1;
  return [
    { name: 'dense/kernel', shape: [kernel.length / 16, 16], data: kernel },
    { name: 'dense/bias', shape: [biasLength], data: new Float32Array(biasLength) },
  ];
}

/**
 * Writes the sites file and the initial model of a federation of `sites`
 * sites into `workDir`, and picks a free port on 127.0.0.1 that stays the
 * same across coordinator restarts.
 * @param meta metadata of the initial model; the site agent needs backbone, inputSize and maxSlices.
 */
export async function prepareFederation(
  workDir: string,
  sites: number,
  model: NamedTensor[],
  meta: Record<string, string | number> = LIGHT_MODEL_META,
): Promise<LocalFederation> {
  mkdirSync(workDir, { recursive: true });
  const credentials = Array.from({ length: sites }, (_, i) => ({ name: `site-${String(i + 1).padStart(2, '0')}`, token: `token-of-chaos-site-${i + 1}` }));
  const sitesFile = join(workDir, 'sites.json');
  writeFileSync(sitesFile, JSON.stringify({ sites: credentials.map((s) => ({ name: s.name, tokenSha256: createHash('sha256').update(s.token).digest('hex') })) }));
  const initialModelFile = join(workDir, 'initial.cvnw');
  writeFileSync(initialModelFile, encodeWeights(model, 'float32', meta));
  const port = await freePort();
  return {
    workDir,
    dataDir: join(workDir, 'coordinator'),
    port,
    url: `http://127.0.0.1:${port}`,
    sitesFile,
    initialModelFile,
    sentDir: join(workDir, 'sent'),
    ackLog: join(workDir, 'acknowledged.jsonl'),
    sites: credentials,
  };
}

/** Returns a TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** A coordinator process of a LocalFederation, started again on the same port and data dir after each kill. */
export class CoordinatorProcess {
  private process: ManagedProcess | null = null;
  starts = 0;

  constructor(
    private readonly federation: LocalFederation,
    /** Flags added to the fixed ones: rounds, quorum, deadline, chunk size. */
    private readonly flags: string[],
    /** Whether the process exits after its last round (`--exit-when-done`) or keeps serving until killed. */
    private readonly exitWhenDone = true,
  ) {}

  get running(): boolean {
    return this.process !== null;
  }

  /** Resolves with the exit code once the running process ends by itself. */
  get exited(): Promise<number | null> {
    return this.process?.exited ?? Promise.resolve(null);
  }

  /**
   * Starts the coordinator and waits for its `coordinator listening` line.
   * @throws Error when the process exits first.
   */
  async start(): Promise<void> {
    this.starts += 1;
    const f = this.federation;
    let listening: () => void = () => {};
    const ready = new Promise<void>((resolve) => (listening = resolve));
    const process = startProcess(
      'coordinator',
      'apps/coordinator/src/main.ts',
      ['--port', String(f.port), '--host', '127.0.0.1', '--data-dir', f.dataDir, '--sites', f.sitesFile, '--initial-model', f.initialModelFile, ...(this.exitWhenDone ? ['--exit-when-done'] : []), ...this.flags],
      join(f.workDir, 'coordinator.log'),
      { COVNET_ADMIN_TOKEN: ADMIN_TOKEN, LOG_LEVEL: 'info' },
      (line) => {
        if (line.startsWith('coordinator listening')) listening();
      },
    );
    this.process = process;
    const code = await Promise.race([ready.then(() => 'ready' as const), process.exited]);
    if (code !== 'ready') {
      this.process = null;
      throw new Error(`coordinator exited with code ${code} before listening; see ${join(f.workDir, 'coordinator.log')}`);
    }
  }

  /** Kills the coordinator with SIGKILL and waits for it to end. */
  async kill(): Promise<void> {
    const process = this.process;
    if (!process) return;
    this.process = null;
    process.child.kill('SIGKILL');
    await process.exited;
  }
}

/** A light agent process of one site, started again after each kill. */
export class AgentProcess {
  private process: ManagedProcess | null = null;

  constructor(
    private readonly federation: LocalFederation,
    readonly site: SiteCredentials,
    private readonly options: Pick<LightAgentOptions, 'trainExams' | 'trainMs' | 'seed' | 'chunkBytes'>,
  ) {}

  get running(): boolean {
    return this.process !== null;
  }

  /** Resolves with the exit code when the running process ends. */
  get exited(): Promise<number | null> {
    return this.process?.exited ?? Promise.resolve(null);
  }

  start(): void {
    const f = this.federation;
    const options: LightAgentOptions = { url: f.url, token: this.site.token, site: this.site.name, sentDir: f.sentDir, ackLog: f.ackLog, ...this.options };
    const process = startProcess(this.site.name, 'scripts/chaos/light-agent-main.ts', [JSON.stringify(options)], join(f.workDir, `${this.site.name}.log`));
    this.process = process;
    process.exited.then(() => {
      if (this.process === process) this.process = null;
    });
  }

  /** Kills the agent with SIGKILL and waits for it to end. */
  async kill(): Promise<void> {
    const process = this.process;
    if (!process) return;
    this.process = null;
    process.child.kill('SIGKILL');
    await process.exited;
  }
}
