import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import {
  AGENT_EVENTS,
  COORDINATOR_EVENTS,
  HISTOGRAM_BINS,
  PROTOCOL_VERSION,
  decodeWeights,
  encodeWeights,
  parseEvent,
  sha256Hex,
  type EvaluateTask,
  type FederationDone,
  type NamedTensor,
  type SiteMetrics,
  type TrainTask,
} from '@covnet/protocol';
import { downloadModel, request, uploadUntilAccepted } from '@covnet/site-agent';

export interface LightAgentOptions {
  url: string;
  token: string;
  site: string;
  /** Exam count the update is weighted by, declared in the hello as covid19 training exams. */
  trainExams: number;
  /** Time the simulated local training takes, in ms. */
  trainMs: number;
  /** Seed of the simulated training; the update of a site and round is a function of it and the global model. */
  seed: number;
  /** Folder where every update sent is written as `<sha256>.cvnw`, for an offline replay. */
  sentDir?: string;
  /** JSON-lines file of every update the coordinator acknowledged: `{site, round, sha256, duplicate}`. */
  ackLog?: string;
  /** Upload chunk size in bytes (default and maximum 512 KiB). */
  chunkBytes?: number;
  /** Awaited before each task starts, so that a test in the same process can hold agents back. */
  beforeTask?: (task: 'train' | 'evaluate', round: number) => Promise<void>;
}

/** One update the coordinator acknowledged. */
export interface AcknowledgedUpdate {
  site: string;
  round: number;
  sha256: string;
  numExamples: number;
  duplicate: boolean;
}

/**
 * A site agent reduced to the protocol, for load and failure tests. It uses
 * the real socket.io client, the real weight codec and the site agent's own
 * download and upload functions, but simulates local training. The update of
 * a round is the global model plus a pseudo-random step that depends only on
 * seed, site and round, so a restarted agent sends the same bytes again.
 */
export class LightAgent {
  readonly socket: Socket;
  readonly acknowledged: AcknowledgedUpdate[] = [];
  private queue: Promise<void> = Promise.resolve();
  private joined: Promise<boolean> = Promise.resolve(false);

  constructor(private readonly options: LightAgentOptions) {
    this.socket = io(options.url, {
      auth: { token: options.token, protocolVersion: PROTOCOL_VERSION },
      transports: ['websocket'],
      reconnectionDelay: 200,
      reconnectionDelayMax: 1_000,
      autoConnect: false,
    });
    if (options.sentDir) mkdirSync(options.sentDir, { recursive: true });
  }

  /** Connects and serves rounds until the coordinator sends federation:done. */
  run(): Promise<FederationDone> {
    return new Promise((resolve, reject) => {
      this.socket.on('connect', () => {
        this.joined = this.hello().then(
          () => true,
          () => false,
        );
      });
      this.socket.on('disconnect', (reason) => {
        // The coordinator closes the socket of a site that connects again; reconnect as the real agent does.
        if (reason === 'io server disconnect') setTimeout(() => this.socket.connect(), 200);
      });
      this.socket.on('connect_error', (error: Error & { data?: { code?: string } }) => {
        if (error.data?.code?.startsWith('auth_')) reject(new Error(`site ${this.options.site} rejected: ${error.data.code}`));
      });
      this.socket.on(COORDINATOR_EVENTS.trainTask, (payload: unknown) => this.enqueue(() => this.train(parseEvent('round:train', payload))));
      this.socket.on(COORDINATOR_EVENTS.evaluateTask, (payload: unknown) => this.enqueue(() => this.evaluate(parseEvent('round:evaluate', payload))));
      this.socket.on(COORDINATOR_EVENTS.done, (payload: unknown, ack?: (reply: { ok: true }) => void) => {
        const done = parseEvent('federation:done', payload);
        ack?.({ ok: true });
        this.queue.finally(() => {
          this.socket.close();
          resolve(done);
        });
      });
      this.socket.connect();
    });
  }

  close(): void {
    this.socket.close();
  }

  private enqueue(task: () => Promise<void>): void {
    // A failed task (e.g. the round closed meanwhile) leaves the agent in the federation, as in the real agent.
    this.queue = this.queue.then(task).catch(() => {});
  }

  private async hello(): Promise<void> {
    await request(this.socket, AGENT_EVENTS.hello, {
      agentVersion: 'light-agent',
      backend: 'none',
      trainExams: { covid19: this.options.trainExams, cap: 0, non_pneumonia: 0 },
      valExams: { covid19: 1, cap: 1, non_pneumonia: 1 },
    });
  }

  private async train(task: TrainTask): Promise<void> {
    await this.options.beforeTask?.('train', task.round);
    const global = decodeWeights(await downloadModel(this.socket, task.experiment, task.modelVersion, task.model));
    await new Promise((resolve) => setTimeout(resolve, this.options.trainMs));
    const tensors = simulatedUpdate(global.tensors, `${this.options.seed}/${this.options.site}/${task.round}`);
    const payload = encodeWeights(tensors, 'float32', global.meta);
    const sha256 = sha256Hex(payload);
    if (this.options.sentDir) writeFileSync(join(this.options.sentDir, `${sha256}.cvnw`), payload);
    const header = { experiment: task.experiment, round: task.round, modelVersion: task.modelVersion, numExamples: this.options.trainExams, trainLoss: 0.5 };
    const { duplicate } = await uploadUntilAccepted(this.socket, header, payload, (delayMs) => this.rejoined(delayMs), this.options.chunkBytes);
    const record: AcknowledgedUpdate = { site: this.options.site, round: task.round, sha256, numExamples: this.options.trainExams, duplicate };
    this.acknowledged.push(record);
    if (this.options.ackLog) appendFileSync(this.options.ackLog, `${JSON.stringify(record)}\n`);
  }

  private async evaluate(task: EvaluateTask): Promise<void> {
    await this.options.beforeTask?.('evaluate', task.round);
    await request(this.socket, AGENT_EVENTS.metricsReport, {
      experiment: task.experiment,
      round: task.round,
      modelVersion: task.modelVersion,
      trainExams: this.options.trainExams,
      metrics: FIXED_METRICS,
    });
  }

  private async rejoined(delayMs: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, Math.min(delayMs, 500)));
    while (!this.socket.connected || !(await this.joined)) await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Returns the global model plus a step of at most 0.01 per value, drawn
 * from a generator seeded by `key`.
 */
export function simulatedUpdate(global: NamedTensor[], key: string): NamedTensor[] {
  const next = mulberry32(hashString(key));
  return global.map((tensor) => {
    const data = new Float32Array(tensor.data.length);
    for (let i = 0; i < data.length; i++) data[i] = tensor.data[i] + 0.02 * (next() - 0.5);
    return { name: tensor.name, shape: [...tensor.shape], data };
  });
}

function hashString(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function histogram(bin: number, count: number): number[] {
  const bins = new Array<number>(HISTOGRAM_BINS).fill(0);
  bins[bin] = count;
  return bins;
}

// One validation exam per class, each scored highest for its own class.
export const FIXED_METRICS: SiteMetrics = {
  valExams: 3,
  loss: 0.5,
  auc: { covid19: 1, cap: 1, non_pneumonia: 1 },
  confusion: [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ],
  histograms: {
    covid19: { positive: histogram(150, 1), negative: histogram(50, 2) },
    cap: { positive: histogram(150, 1), negative: histogram(50, 2) },
    non_pneumonia: { positive: histogram(150, 1), negative: histogram(50, 2) },
  },
};
