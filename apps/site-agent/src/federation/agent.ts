import { appendFileSync } from 'node:fs';
import type { Socket } from 'socket.io-client';
import {
  AGENT_EVENTS,
  COORDINATOR_EVENTS,
  decodeWeights,
  encodeWeights,
  parseEvent,
  sha256Hex,
  type EvaluateTask,
  type FederationDone,
  type TrainTask,
} from '@covnet/protocol';
import { createCovnet, type Covnet } from '@covnet/model';
import { SiteArchive, type InputSpec } from '../archive/site-archive';
import { summariseValidation } from '../evaluation/site-metrics';
import { log } from '../log';
import { startProgress } from '../progress';
import { AgentStatus } from './agent-status';
import { downloadModel, uploadUntilAccepted, type UpdateHeader } from './transfer';
import { request } from './socket-call';
import { createCoordinatorSocket, describeConnectError, type AgentTls } from './coordinator-socket';

export interface AgentOptions {
  coordinatorUrl: string;
  token: string;
  /** Site name sent in the handshake, so that the coordinator counts failed attempts per site; optional. */
  site?: string;
  /** Consortium CA and client certificate for an https:// coordinator. */
  tls?: AgentTls;
  archive: SiteArchive;
  backend: string;
  /** GPU the backend runs on, reported in `site:hello`; absent on CPU backends. */
  gpu?: string;
  agentVersion: string;
  /** JSON-lines file recording every message this agent sends (binary replaced by its size and SHA-256). */
  auditLog?: string;
  /** Called with every message this agent sends, as socket.io sends it; for audits and tests. */
  onOutgoing?: (event: string, args: unknown[]) => void;
  /** Seed of local shuffling and augmentation; the round number is added to it. */
  seed?: number;
  /** Connection, current round and messages sent, mirrored to a file for `site-agent status`. */
  status?: AgentStatus;
}

const REJOIN_TIMEOUT_MS = 5 * 60_000;

/** Reasons that end the agent: the coordinator rejected its credentials. */
export class AuthenticationError extends Error {}

/**
 * A site's member of the federation: connects with its token, trains on
 * its own exams when a round requests it, evaluates each new global model on its
 * validation exams and sends back weights and aggregate metrics only.
 */
export class FederationAgent {
  private readonly socket: Socket;
  private model: { covnet: Covnet; spec: InputSpec } | null = null;
  /** Experiment and version of the global model in `model`, as `experiment@version`; null once local training changed it. */
  private loadedModel: string | null = null;
  private queue: Promise<void> = Promise.resolve();
  /** Resolves with whether `site:hello` was acknowledged on the current connection. */
  private joined: Promise<boolean> = Promise.resolve(false);
  /**
   * The last update this agent trained, kept until the next one, so that a
   * train task repeated after a reconnect sends it again instead of training again.
   */
  private lastUpdate: { key: string; header: UpdateHeader; payload: Buffer } | null = null;
  private sentMessages = 0;
  private readonly status: AgentStatus;

  constructor(private readonly options: AgentOptions) {
    this.status = options.status ?? new AgentStatus(options.coordinatorUrl);
    this.socket = createCoordinatorSocket({ url: options.coordinatorUrl, token: options.token, site: options.site, tls: options.tls });
    this.socket.onAnyOutgoing((event, ...args) => {
      options.onOutgoing?.(event, args);
      this.audit(event, args);
    });
  }

  /** Connects and serves rounds until the coordinator ends the federation. */
  run(): Promise<FederationDone> {
    return new Promise<FederationDone>((resolve, reject) => {
      const socket = this.socket;
      socket.on('connect', () => {
        log.info({ coordinator: this.options.coordinatorUrl }, 'connected to the coordinator');
        this.status.connection('connected');
        // Not queued: a task that waits to send its update again needs the hello first.
        this.joined = this.hello().then(
          () => true,
          (error: Error) => {
            log.error({ error: error.message }, 'site:hello failed');
            return false;
          },
        );
      });
      socket.on('disconnect', (reason) => {
        // Only a close by this agent or by the coordinator ends the connection for good.
        if (reason === 'io client disconnect') return;
        this.status.connection('reconnecting');
        if (reason === 'io server disconnect') {
          // socket.io does not reconnect after a close by the server. An agent is a
          // daemon, so it tries again later; a revoked token then ends it at the handshake.
          log.warn({ reason, retryInSeconds: 5 }, 'the coordinator closed the connection; reconnecting');
          setTimeout(() => socket.connect(), 5_000);
          return;
        }
        log.warn({ reason }, 'disconnected from the coordinator; reconnecting');
      });
      socket.io.on('reconnect', (attempt) => {
        log.info({ attempt }, 'reconnected to the coordinator');
      });
      socket.on('connect_error', (error: Error & { data?: { code?: string; message?: string; retryAfterS?: number } }) => {
        const code = error.data?.code;
        if (code === 'rate_limited') {
          // A rejection by the coordinator's middleware is not retried by socket.io itself.
          const retryInSeconds = Math.max(1, Math.min(error.data?.retryAfterS ?? 60, 600));
          log.warn({ code, retryInSeconds }, `the coordinator rejected the connection: ${error.data?.message ?? error.message}`);
          this.status.connection('reconnecting');
          setTimeout(() => socket.connect(), retryInSeconds * 1000);
          return;
        }
        if (code?.startsWith('auth_')) {
          this.status.connection('rejected');
          socket.close();
          reject(new AuthenticationError(`the coordinator rejected this site: ${code}: ${error.data?.message ?? error.message}`));
          return;
        }
        log.warn({ error: describeConnectError(error) }, 'connection to the coordinator failed; retrying');
        if (this.status.current.connection === 'connected') this.status.connection('reconnecting');
      });
      socket.on(COORDINATOR_EVENTS.trainTask, (payload: unknown) => {
        this.enqueue('train', () => this.train(parseEvent('round:train', payload)));
      });
      socket.on(COORDINATOR_EVENTS.evaluateTask, (payload: unknown) => {
        this.enqueue('evaluate', () => this.evaluate(parseEvent('round:evaluate', payload)));
      });
      socket.on(COORDINATOR_EVENTS.done, (payload: unknown, ack?: (reply: { ok: true }) => void) => {
        const done = parseEvent('federation:done', payload);
        // Acknowledged on receipt: a coordinator started with --exit-when-done waits for it before it exits.
        ack?.({ ok: true });
        log.info({ rounds: done.rounds, finalModelVersion: done.finalModelVersion }, 'federation finished');
        this.queue.finally(() => {
          this.status.connection('finished');
          socket.close();
          this.model?.covnet.dispose();
          resolve(done);
        });
      });
      socket.connect();
    });
  }

  close(): void {
    this.socket.close();
    this.model?.covnet.dispose();
  }

  get messagesSent(): number {
    return this.sentMessages;
  }

  // Tasks run one at a time in arrival order; a failed task is logged and
  // the agent stays in the federation for the next one.
  private enqueue(name: string, task: () => Promise<void>): void {
    this.queue = this.queue.then(task).catch((error: Error) => {
      log.error({ task: name, error: error.message, stack: error.stack }, 'task failed');
    });
  }

  private async hello(): Promise<void> {
    const archive = this.options.archive;
    const welcome = await request<{ site: string; experiment: string }>(this.socket, AGENT_EVENTS.hello, {
      agentVersion: this.options.agentVersion,
      backend: this.options.backend,
      ...(this.options.gpu ? { gpu: this.options.gpu } : {}),
      ...(this.model ? { backbone: this.model.spec.backbone, inputSize: this.model.spec.inputSize } : {}),
      trainExams: archive.counts('train'),
      valExams: archive.counts('val'),
    });
    log.info({ site: welcome.site, experiment: welcome.experiment }, 'joined the federation');
    this.status.joined(welcome.site, welcome.experiment);
  }

  /**
   * Loads global model `version` of `experiment`, unless it is loaded already.
   * The key includes the experiment because two experiments number their versions alike.
   * NOTE: one model and one preprocessed exam set are kept, so tasks that
   * alternate between experiments with different input sizes preprocess again each time.
   */
  private async loadGlobalModel(experiment: string, version: number, ref: TrainTask['model']): Promise<Covnet> {
    const key = `${experiment}@${version}`;
    if (this.model && this.loadedModel === key) return this.model.covnet;
    const payload = await downloadModel(this.socket, experiment, version, ref);
    const decoded = decodeWeights(payload);
    const spec = readSpec(decoded.meta, version);
    if (!this.model || this.model.spec.backbone !== spec.backbone || this.model.spec.inputSize !== spec.inputSize) {
      this.model?.covnet.dispose();
      this.model = { covnet: createCovnet({ backbone: spec.backbone as 'small', inputSize: spec.inputSize }), spec };
    }
    this.model.spec = spec;
    this.model.covnet.setNamedWeights(decoded.tensors);
    this.loadedModel = key;
    return this.model.covnet;
  }

  private async train(task: TrainTask): Promise<void> {
    this.status.taskStarted('train', task.round, task.modelVersion);
    try {
      await this.trainRound(task);
    } finally {
      this.status.taskEnded(task.round);
    }
  }

  private async trainRound(task: TrainTask): Promise<void> {
    const started = Date.now();
    const key = `${task.experiment}@${task.round}@${task.modelVersion}`;
    if (this.lastUpdate?.key === key) {
      log.info({ round: task.round }, 'the coordinator sent this round again: sending the update trained earlier');
      await this.sendUpdate(this.lastUpdate.header, this.lastUpdate.payload);
      return;
    }
    const covnet = await this.loadGlobalModel(task.experiment, task.modelVersion, task.model);
    const exams = await this.prepareExams();
    if (exams.train.length === 0) {
      log.warn({ round: task.round }, 'no training exams at this site; skipping the round');
      return;
    }
    // Optimizer steps of all epochs: the bar's full length.
    const plannedSteps = task.hyper.epochs * Math.ceil(exams.train.length / task.hyper.batchSize);
    const progress = startProgress(`round ${task.round}: local training on ${exams.train.length} exams, ${task.hyper.epochs} epochs`, plannedSteps);
    const result = await covnet.trainLocal(
      exams.train.map((e) => ({ input: e.input, label: e.label })),
      {
        epochs: task.hyper.epochs,
        learningRate: task.hyper.learningRate,
        batchSize: task.hyper.batchSize,
        proximalMu: task.hyper.proximalMu,
        seed: (this.options.seed ?? 0) + task.round,
        onStep: (steps) => progress.update(steps),
      },
    );
    progress.finish(`loss ${result.loss.toFixed(4)} after ${result.steps} steps`);
    // The local weights now differ from any global version.
    this.loadedModel = null;
    const payload = encodeWeights(covnet.getNamedWeights(), 'float32', { ...this.model!.spec });
    const header = { experiment: task.experiment, round: task.round, modelVersion: task.modelVersion, numExamples: exams.train.length, trainLoss: result.loss };
    this.lastUpdate = { key, header, payload };
    await this.sendUpdate(header, payload);
    log.info(
      { round: task.round, loss: result.loss, steps: result.steps, exams: exams.train.length, ms: Date.now() - started },
      'update sent',
    );
  }

  private async sendUpdate(header: UpdateHeader, payload: Buffer): Promise<void> {
    const { duplicate } = await uploadUntilAccepted(this.socket, header, payload, (delayMs) => this.rejoined(delayMs));
    if (duplicate) log.info({ round: header.round }, 'the coordinator had already accepted this update');
  }

  /**
   * Waits `delayMs`, then until the agent is connected and its hello is acknowledged.
   * @throws Error after REJOIN_TIMEOUT_MS without that.
   */
  private async rejoined(delayMs: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    const giveUpAt = Date.now() + REJOIN_TIMEOUT_MS;
    while (!this.socket.connected || !(await this.joined)) {
      if (Date.now() > giveUpAt) throw new Error(`not connected to the coordinator within ${REJOIN_TIMEOUT_MS / 1000} s; the update is not sent`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  private async evaluate(task: EvaluateTask): Promise<void> {
    this.status.taskStarted('evaluate', task.round, task.modelVersion);
    try {
      await this.evaluateRound(task);
    } finally {
      this.status.taskEnded(task.round);
    }
  }

  private async evaluateRound(task: EvaluateTask): Promise<void> {
    const covnet = await this.loadGlobalModel(task.experiment, task.modelVersion, task.model);
    const exams = await this.prepareExams();
    const { probs, labels } = await covnet.evaluate(exams.val.map((e) => ({ input: e.input, label: e.label })));
    const metrics = summariseValidation(probs, labels);
    await request(this.socket, AGENT_EVENTS.metricsReport, {
      experiment: task.experiment,
      round: task.round,
      modelVersion: task.modelVersion,
      trainExams: exams.train.length,
      metrics,
    });
    log.info({ round: task.round, modelVersion: task.modelVersion, auc: metrics.auc }, 'metrics sent');
  }

  /** Preprocesses the archive for the loaded model, with progress, or returns the cached exams. */
  private prepareExams() {
    const archive = this.options.archive;
    const spec = this.model!.spec;
    if (archive.isPrepared(spec)) return archive.prepare(spec);
    const progress = startProgress('preprocessing', archive.examCount);
    return archive.prepare(spec, (done) => progress.update(done)).then((exams) => {
      progress.finish();
      return exams;
    });
  }

  private audit(event: string, args: unknown[]): void {
    this.sentMessages += 1;
    this.status.sent(event, binaryBytes(args));
    if (!this.options.auditLog) return;
    const payload = args.filter((a) => typeof a !== 'function');
    // JSON.stringify calls a Buffer's toJSON before the replacer, so the replacer
    // reads the original value through `this`.
    const line = JSON.stringify({ at: new Date().toISOString(), event, payload }, function (this: Record<string, unknown>, key, value) {
      const original = this[key];
      return original instanceof Uint8Array ? { bytes: original.byteLength, sha256: sha256Hex(original) } : value;
    });
    appendFileSync(this.options.auditLog, `${line}\n`);
  }
}

function binaryBytes(value: unknown): number {
  if (value instanceof Uint8Array) return value.byteLength;
  if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + binaryBytes(item), 0);
  if (value !== null && typeof value === 'object') return Object.values(value).reduce((sum: number, item) => sum + binaryBytes(item), 0);
  return 0;
}

function readSpec(meta: Record<string, unknown>, version: number): InputSpec {
  const { backbone, inputSize, maxSlices } = meta;
  if (typeof backbone !== 'string' || typeof inputSize !== 'number' || typeof maxSlices !== 'number') {
    throw new Error(
      `global model version ${version} lacks backbone, inputSize or maxSlices in its metadata: ${JSON.stringify(meta)}`,
    );
  }
  return { backbone, inputSize, maxSlices };
}
