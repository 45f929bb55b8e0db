import { readFile } from 'node:fs/promises';
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type { Logger } from 'pino';
import {
  COORDINATOR_EVENTS,
  ProtocolError,
  decodeWeights,
  type ErrorCode,
  type EvaluateTask,
  type MetricsReport,
  type NamedTensor,
  type TrainTask,
  type UpdateBegin,
  type UpdateBeginReply,
  type UpdateChunk,
  type UpdateCommit,
  type UpdateCommitReply,
} from '@covnet/protocol';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/config';
import { ROOT_LOGGER } from '../logging/logger';
import { FedAvgAccumulator, firstNonFinite, layoutMismatch } from '../aggregation/fedavg';
import { StoredUpdate } from '../aggregation/stored-update';
import { createAggregator, type Aggregator } from '../aggregation/aggregator';
import { UpdateNormCheck, updateDistance } from '../aggregation/update-norm';
import { FedAdam, type FedAdamOptions } from '../aggregation/fedadam';
import { sampleParticipants } from './participants';
import { ModelStore } from '../models/model-store.service';
import { MetricsService } from '../metrics/metrics.service';
import { SiteSessions } from '../sites/site-sessions';
import type { LeftOutSite, RoundEntity } from '../persistence/entities';
import { CoordinatorEvents } from '../events/coordinator-events';
import { ExperimentService, ExperimentStopped } from '../experiments/experiment.service';
import { Clock } from '../clock';
import { Deferred } from './deferred';
import { RoundRecords } from './round-records';
import { Uploads, type Upload } from './uploads';
import { WaitingFolds } from './waiting-folds';
import type { UpdateFiles } from './update-files';

// How long one federation:done waits for its acknowledgement. An agent
// acknowledges on receipt, even while a task is still running.
const DONE_ACK_TIMEOUT_MS = 10_000;

/** Outcome of a federation whose rounds all finished. */
export interface FederationSummary {
  experiment: string;
  rounds: number;
  finalModelVersion: number;
  finalSha256: string;
}

/** Raised inside the round loop when the coordinator shuts down. */
class SchedulerStopped extends Error {
  override name = 'SchedulerStopped';
}

interface TrainingPhase {
  task: TrainTask;
  participants: ReadonlySet<string>;
  /** SHA-256 of each accepted update, by site. */
  accepted: Map<string, string>;
  /** Participants revoked during the round; the round no longer waits for them. */
  revoked: Set<string>;
  /** Sites whose update row is being written; a second commit meanwhile is a duplicate. */
  committing: Set<string>;
  // Batch-normalisation moving statistics are ordinary tensors of the payload,
  // so they are averaged here like every weight.
  accumulator: Aggregator;
  /** FedAvg updates accepted but not yet folded into `accumulator`; null for median and trimmed-mean, which keep every update. */
  folds: WaitingFolds | null;
  /** The global model's tensors by name while an update norm bound is set; null otherwise. */
  globalTensors: Map<string, Float32Array> | null;
  /** L2 distances from the global model of the accepted updates, while an update norm bound is set. */
  distances: number[];
  /** Code of the last rejected update of each participant that has no accepted one. */
  rejected: Map<string, ErrorCode>;
  deadlinePassed: boolean;
  closed: Deferred<void>;
  cancelTimer: () => void;
}

interface EvaluationPhase {
  task: EvaluateTask;
  evaluators: Set<string>;
  reported: Set<string>;
  closed: Deferred<void>;
  cancelTimer: () => void;
}

interface ActiveRound {
  entity: RoundEntity;
  training: TrainingPhase | null;
  evaluation: EvaluationPhase | null;
}

/**
 * Runs the rounds of the experiment (see README.md in this folder) and
 * decides on every update and metrics report that sites send.
 */
@Injectable()
export class RoundScheduler implements OnApplicationShutdown {
  private readonly log: Logger;
  private readonly uploads: Uploads;
  // Commits run one at a time, so updates are stored, recorded and folded
  // into the sum in one order: the order of their row ids, which a restart replays.
  private commits: Promise<unknown> = Promise.resolve();
  // Commits taken and not yet settled. While one is queued behind another,
  // accepted FedAvg updates wait on disk, and the last commit of a burst
  // folds all of them in one batched pass.
  private commitsInFlight = 0;
  private active: ActiveRound | null = null;
  private quorum: Deferred<void> | null = null;
  private summary: FederationSummary | null = null;
  private stopped = false;
  private readonly onReady = (site: string) => this.handleSiteReady(site);
  private readonly onRevoked = (site: string) => this.dropRevokedSite(site);
  // Server optimizer state of FedAdam after the current global model version.
  // Each checkpoint's row records it too, and a restarted coordinator reads it from there.
  private fedAdam: FedAdam | null = null;
  // One aggregator serves every round, so its memory is allocated once.
  private aggregator: Aggregator | null = null;
  private readonly normCheck: UpdateNormCheck;
  /**
   * Whether this scheduler sends federation:done once its experiment is
   * finished. A coordinator that runs several experiments sets it so that
   * only the last one to finish sends it, because an agent stops at the first.
   */
  announcesDone: () => boolean = () => true;
  /** Called once when the experiment's rounds have finished, before federation:done goes out. */
  onFinished: () => void = () => {};

  constructor(
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    @Inject(ROOT_LOGGER) rootLogger: Logger,
    @Inject(ModelStore) private readonly models: ModelStore,
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(SiteSessions) private readonly sessions: SiteSessions,
    @Inject(RoundRecords) private readonly records: RoundRecords,
    @Inject(Clock) private readonly clock: Clock,
    @Inject(CoordinatorEvents) private readonly events: CoordinatorEvents,
    @Inject(ExperimentService) private readonly experiment: ExperimentService,
    private readonly updateFiles: UpdateFiles,
  ) {
    this.log = rootLogger.child({ context: 'rounds', experiment: config.experiment });
    this.uploads = new Uploads(updateFiles, this.log);
    this.normCheck = new UpdateNormCheck({ maxUpdateNorm: config.maxUpdateNorm, maxUpdateNormRatio: config.maxUpdateNormRatio });
    sessions.on('ready', this.onReady);
    events.on('siteRevoked', this.onRevoked);
  }

  /**
   * Runs every remaining round and resolves when the last is done.
   * @throws SchedulerStopped when the coordinator shuts down first.
   */
  async run(): Promise<FederationSummary> {
    // Uploads that a killed process left unfinished cannot be resumed: their ids were in its memory.
    await this.updateFiles.removeUploads();
    const first = await this.records.firstRoundToRun();
    if (first > 1) this.log.info({ round: first }, `rounds 1-${first - 1} are already done; resuming at round ${first}`);
    let lastRound = first - 1;
    for (let number = first; number <= this.config.rounds; number++) {
      try {
        await this.runRound(number);
      } catch (error) {
        if (!(error instanceof ExperimentStopped) || this.stopped) throw error;
        this.active = null;
        this.log.warn({ round: number }, `experiment stopped before round ${number} trained; the federation ends after ${lastRound} rounds`);
        break;
      }
      lastRound = number;
    }
    if (this.experiment.state !== 'stopped') await this.experiment.markDone();
    const current = this.models.current;
    this.summary = {
      experiment: this.config.experiment,
      rounds: lastRound,
      finalModelVersion: current.version,
      finalSha256: current.ref.sha256,
    };
    this.onFinished();
    if (this.announcesDone()) for (const site of this.sessions.readySites()) this.sendDone(site);
    this.log.info({ modelVersion: current.version }, `federation done after ${lastRound} rounds`);
    return this.summary;
  }

  /** Number of the round in progress, or null between rounds. */
  get openRound(): number | null {
    return this.active?.entity.number ?? null;
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    this.sessions.off('ready', this.onReady);
    this.events.off('siteRevoked', this.onRevoked);
    const stop = new SchedulerStopped('coordinator is shutting down');
    this.quorum?.reject(stop);
    this.active?.training?.cancelTimer();
    this.active?.training?.closed.reject(stop);
    this.active?.training?.folds?.cancel(stop);
    this.active?.evaluation?.cancelTimer();
    this.active?.evaluation?.closed.reject(stop);
    this.uploads.clear();
  }

  // ---- the round loop ----

  private async runRound(number: number): Promise<void> {
    const unfinished = await this.records.find(number);
    const resumed = unfinished && unfinished.state !== 'waiting_for_quorum' && unfinished.state !== 'done' ? unfinished : null;
    const log = this.log.child({ round: number });
    let entity: RoundEntity;
    if (resumed) {
      entity = resumed;
      log.info({ state: entity.state, modelVersion: entity.modelVersionIn }, `round ${number} resumes in state ${entity.state}`);
    } else {
      entity = await this.records.open(number, this.models.current.version);
      await this.updateFiles.removeRound(number);
    }
    const active: ActiveRound = { entity, training: null, evaluation: null };
    this.active = active;

    const aggregated = resumed ? await this.models.versionOfRound(number) : null;
    if (aggregated) {
      entity.modelVersionOut = aggregated.version;
      log.info({ modelVersion: aggregated.version }, `round ${number} was aggregated into model version ${aggregated.version} before the restart`);
    } else {
      let training: TrainingPhase;
      if (resumed) {
        training = await this.resumeTraining(active);
      } else {
        log.info({ modelVersion: entity.modelVersionIn }, `round ${number} waiting for ${this.config.minSites} sites`);
        await this.waitForQuorum(number);
        // A paused experiment waits here, before any site receives a train task.
        await this.experiment.beforeRound();
        this.checkStopped();
        training = await this.startTraining(active);
      }
      await training.closed.promise;
      // A commit still running when the round closed finishes or rolls back first.
      await this.commits;
      this.checkStopped();

      await this.records.transition(entity, 'aggregating');
      const { tensors, optimizerState } = await this.aggregate(training);
      let saved;
      try {
        saved = await this.models.saveNext(number, tensors, optimizerState);
      } catch (error) {
        // The moments in memory already include this step; the stored ones do not.
        this.fedAdam = null;
        throw error;
      }
      entity.modelVersionOut = saved.version;
      this.normCheck.roundAggregated(training.distances);
      log.info(
        {
          modelVersion: saved.version,
          sha256: saved.sha256,
          updates: training.accumulator.updates,
          examples: training.accumulator.weight,
          aggregation: this.config.aggregation.name,
        },
        `round ${number} aggregated ${training.accumulator.updates} updates into model version ${saved.version} by ${this.config.aggregation.name}`,
      );
    }
    // The checkpoint is recorded, so the round's update files are no longer needed.
    await this.updateFiles.removeRound(number);
    await this.records.releaseUpdates(number);

    // Rounds between evaluations skip straight to done; the last round is always evaluated.
    if (number % this.config.evaluateEvery === 0 || number === this.config.rounds) {
      // After a restart no site is connected yet, and an evaluation without evaluators closes at once.
      if (resumed) await this.waitForQuorum(number);
      const evaluation = await this.startEvaluation(active);
      await evaluation.closed.promise;
      this.checkStopped();
    } else {
      log.info(`round ${number} is not evaluated: evaluation runs every ${this.config.evaluateEvery} rounds`);
    }

    await this.records.transition(entity, 'done');
    this.active = null;
    log.info(`round ${number} done`);
  }

  /**
   * Returns the round's new global model from the aggregate under the
   * experiment's strategy. With median or trimmed-mean aggregation, FedAdam
   * steps towards that estimate instead of the FedAvg mean, and returns the
   * optimizer state to store with the new version.
   */
  private async aggregate(training: TrainingPhase): Promise<{ tensors: NamedTensor[]; optimizerState: Buffer | null }> {
    const mean = this.meanOf(training);
    const strategy = this.config.strategy;
    switch (strategy.name) {
      case 'fedavg':
      case 'fedprox':
        // FedProx differs from FedAvg only in the sites' local loss.
        return { tensors: mean, optimizerState: null };
      case 'fedadam': {
        this.fedAdam ??= await this.restoreFedAdam(strategy);
        const tensors = this.fedAdam.step(this.models.currentTensors(), mean);
        return { tensors, optimizerState: this.fedAdam.serialize() };
      }
    }
  }

  /**
   * Returns the weighted mean of the round's updates. FedAvg updates still
   * waiting when the round closes are folded and divided out in one pass.
   * @throws Error when a waiting update's stored file cannot be read.
   */
  private meanOf(training: TrainingPhase): NamedTensor[] {
    if (!training.folds) return training.accumulator.result();
    const waiting = training.folds.size;
    const mean = training.folds.flushWithResult();
    if (waiting > 1) this.log.debug({ round: training.task.round, updates: waiting }, `${waiting} waiting updates folded in one batched pass`);
    return mean;
  }

  /**
   * Returns FedAdam with the moments stored with the current global model
   * version, or with zero moments at version 0.
   * @throws Error when the stored state cannot be read or does not fit the model.
   */
  private async restoreFedAdam(options: FedAdamOptions): Promise<FedAdam> {
    const version = this.models.current.version;
    const stored = await this.models.currentOptimizerState();
    if (stored === null) {
      if (version > 0) {
        // Versions written before the state was stored have none; an uninterrupted run would differ.
        this.log.warn({ modelVersion: version }, `model version ${version} has no stored FedAdam state: FedAdam continues with zero moments`);
      }
      return new FedAdam(this.models.layout, options);
    }
    this.log.info({ modelVersion: version, file: stored.path }, `FedAdam moments of model version ${version} restored from ${stored.path}`);
    return FedAdam.restore(this.models.layout, options, stored.state, stored.path);
  }

  private async waitForQuorum(number: number): Promise<void> {
    this.checkStopped();
    if (this.sessions.readySites().length >= this.config.minSites) return;
    this.quorum = new Deferred<void>();
    try {
      await this.quorum.promise;
    } finally {
      this.quorum = null;
    }
    this.log.info({ round: number, sites: this.sessions.readySites() }, `round ${number} has a quorum`);
  }

  private async startTraining(active: ActiveRound): Promise<TrainingPhase> {
    const { entity } = active;
    entity.participants = sampleParticipants(this.sessions.readySites(), {
      experiment: this.config.experiment,
      round: entity.number,
      fraction: this.config.fractionPerRound,
      minSites: this.config.minSites,
    });
    await this.records.transition(entity, 'training');
    return this.openTraining(active, this.freshAggregator(), new Map(), []);
  }

  /**
   * Rebuilds the training phase of a round that an earlier process left in
   * `training` or `aggregating`. The stored updates are folded into the sum
   * again in the order they were accepted, so the float64 sum is the same bit
   * for bit. Participants keep their places, and those without an accepted
   * update get a new full deadline, because they need time to reconnect.
   * @throws Error when a stored update is missing or differs from its recorded SHA-256.
   */
  private async resumeTraining(active: ActiveRound): Promise<TrainingPhase> {
    const { entity } = active;
    if (entity.modelVersionIn !== this.models.current.version) {
      throw new Error(
        `round ${entity.number} trains from model version ${entity.modelVersionIn}, but the latest stored version is ${this.models.current.version}`,
      );
    }

    const accumulator = this.freshAggregator();
    const accepted = new Map<string, string>();
    // With an update norm bound, the next rounds' bound needs this round's distances too.
    const globalTensors = this.globalTensorsForNormCheck();
    const distances: number[] = [];
    // FedAvg folds the stored updates in one batched pass once all are
    // checked. It reads them back from their files, so no decoded update is kept.
    const stored: StoredUpdate[] = [];
    for (const row of await this.records.updatesOf(entity.number)) {
      if (row.payloadPath === null) {
        throw new Error(`accepted update of site ${row.site} in round ${entity.number} has no stored file, so the round's sum cannot be rebuilt`);
      }
      const payload = await this.updateFiles.readAccepted(row.payloadPath, row.sha256);
      const decoded = decodeWeights(payload);
      if (accumulator instanceof FedAvgAccumulator) stored.push(new StoredUpdate(this.updateFiles.acceptedFile(row.payloadPath), row.numExamples, this.models.layout, decoded));
      else accumulator.add(decoded.tensors, row.numExamples);
      accepted.set(row.site, row.sha256);
      if (globalTensors) distances.push(updateDistance(globalTensors, decoded.tensors));
    }
    if (accumulator instanceof FedAvgAccumulator) accumulator.addBatch(stored);

    this.log.info(
      { round: entity.number, accepted: [...accepted.keys()], examples: accumulator.weight },
      `round ${entity.number}: ${accepted.size} stored updates folded into the sum again`,
    );

    if (entity.state === 'aggregating') {
      const closed = new Deferred<void>();
      closed.resolve();
      return { ...this.trainingPhase(entity, accumulator, accepted, distances), closed };
    }
    const training = this.openTraining(active, accumulator, accepted, distances);
    this.maybeCloseTraining(active, training);
    return training;
  }

  /** Sends the train task to every participant still missing and starts the deadline. */
  private openTraining(active: ActiveRound, accumulator: Aggregator, accepted: Map<string, string>, distances: number[]): TrainingPhase {
    const { entity } = active;
    const training = this.trainingPhase(entity, accumulator, accepted, distances);
    active.training = training;
    const deadlineMs = this.config.roundTimeoutS * 1000;
    training.cancelTimer = this.clock.setTimer(deadlineMs, () => this.trainingDeadline(active, training));
    const ready = new Set(this.sessions.readySites());
    for (const site of entity.participants) {
      if (!accepted.has(site) && ready.has(site)) this.sessions.send(site, COORDINATOR_EVENTS.trainTask, training.task);
    }
    this.log.info(
      { round: entity.number, modelVersion: training.task.modelVersion, participants: entity.participants, deadline: training.task.deadline },
      `round ${entity.number} training with ${entity.participants.length} sites`,
    );
    return training;
  }

  /** Returns the experiment's aggregator, emptied for a new round; one serves every round, so its memory is allocated once. */
  private freshAggregator(): Aggregator {
    this.aggregator ??= createAggregator(this.models.layout, this.config.aggregation);
    this.aggregator.reset();
    return this.aggregator;
  }

  /** Returns the global model's tensors by name while an update norm bound is set, else null. */
  private globalTensorsForNormCheck(): Map<string, Float32Array> | null {
    return this.normCheck.enabled ? new Map(this.models.currentTensors().map((t) => [t.name, t.data])) : null;
  }

  private trainingPhase(entity: RoundEntity, accumulator: Aggregator, accepted: Map<string, string>, distances: number[]): TrainingPhase {
    const current = this.models.current;
    const task: TrainTask = {
      experiment: this.config.experiment,
      round: entity.number,
      modelVersion: current.version,
      model: current.ref,
      hyper: {
        epochs: this.config.epochs,
        learningRate: this.config.learningRate,
        batchSize: this.config.batchSize,
        proximalMu: this.config.proximalMu,
      },
      deadline: new Date(this.clock.now().getTime() + this.config.roundTimeoutS * 1000).toISOString(),
    };
    return {
      task,
      participants: new Set(entity.participants),
      accepted,
      revoked: new Set(),
      committing: new Set(),
      accumulator,
      folds: accumulator instanceof FedAvgAccumulator ? new WaitingFolds(accumulator) : null,
      globalTensors: this.globalTensorsForNormCheck(),
      distances,
      rejected: new Map(),
      deadlinePassed: false,
      closed: new Deferred<void>(),
      cancelTimer: () => {},
    };
  }

  private trainingDeadline(active: ActiveRound, training: TrainingPhase): void {
    training.deadlinePassed = true;
    const number = active.entity.number;
    if (training.accepted.size >= this.config.minSites) {
      this.closeTraining(active, training);
      return;
    }
    active.entity.leftOut = this.missingParticipants(training);
    this.records.save(active.entity).catch((error: Error) => {
      this.log.error({ round: number, err: error }, `round ${number}: storing the sites left out failed`);
    });
    this.log.error(
      { round: number, accepted: [...training.accepted.keys()], leftOut: active.entity.leftOut },
      `round ${number} deadline passed with ${training.accepted.size} of the ${this.config.minSites} updates needed: the round stays open until ${this.config.minSites} updates are accepted`,
    );
  }

  /**
   * Closes training when every participant that was not revoked has an
   * accepted update (at least --min-sites of them), or after the deadline at quorum.
   */
  private maybeCloseTraining(active: ActiveRound, training: TrainingPhase): void {
    const outstanding = [...training.participants].filter((site) => !training.accepted.has(site) && !training.revoked.has(site));
    const everyone = outstanding.length === 0 && training.accepted.size >= this.config.minSites;
    const lateQuorum = training.deadlinePassed && training.accepted.size >= this.config.minSites;
    if (everyone || lateQuorum) this.closeTraining(active, training);
  }

  private closeTraining(active: ActiveRound, training: TrainingPhase): void {
    if (active.training !== training) return;
    training.cancelTimer();
    active.training = null;
    // Unfinished uploads can no longer be accepted. Until now they survived a
    // disconnect, so that an agent could reconnect and resume from nextIndex.
    this.uploads.clear();
    active.entity.leftOut = this.missingParticipants(training);
    if (active.entity.leftOut.length > 0) {
      this.log.warn(
        { round: active.entity.number, leftOut: active.entity.leftOut },
        `round ${active.entity.number} closes without ${active.entity.leftOut.length} participants`,
      );
    }
    training.closed.resolve();
  }

  private missingParticipants(training: TrainingPhase): LeftOutSite[] {
    return [...training.participants]
      .filter((site) => !training.accepted.has(site))
      .map((site): LeftOutSite => {
        const code = training.rejected.get(site);
        if (training.revoked.has(site)) return { site, reason: 'revoked' };
        if (code !== undefined) return { site, reason: 'rejected', code };
        return { site, reason: this.sessions.isOnline(site) ? 'missed_deadline' : 'disconnected' };
      });
  }

  private async startEvaluation(active: ActiveRound): Promise<EvaluationPhase> {
    const { entity } = active;
    const current = this.models.current;
    const deadlineMs = this.config.roundTimeoutS * 1000;
    const task: EvaluateTask = {
      experiment: this.config.experiment,
      round: entity.number,
      modelVersion: current.version,
      model: current.ref,
      deadline: new Date(this.clock.now().getTime() + deadlineMs).toISOString(),
    };
    await this.records.transition(entity, 'evaluating');

    const evaluators = this.sessions.readySites();
    const evaluation: EvaluationPhase = {
      task,
      evaluators: new Set(evaluators),
      reported: new Set(),
      closed: new Deferred<void>(),
      cancelTimer: () => {},
    };
    active.evaluation = evaluation;
    evaluation.cancelTimer = this.clock.setTimer(deadlineMs, () => {
      const missing = [...evaluation.evaluators].filter((site) => !evaluation.reported.has(site));
      this.log.warn(
        { round: entity.number, modelVersion: current.version, missing },
        `round ${entity.number} evaluation deadline passed without metrics from ${missing.length} sites`,
      );
      this.closeEvaluation(active, evaluation);
    });
    for (const site of evaluators) this.sessions.send(site, COORDINATOR_EVENTS.evaluateTask, task);
    this.log.info(
      { round: entity.number, modelVersion: current.version, evaluators },
      `round ${entity.number} evaluating model version ${current.version} at ${evaluators.length} sites`,
    );
    if (evaluators.length === 0) this.closeEvaluation(active, evaluation);
    return evaluation;
  }

  private closeEvaluation(active: ActiveRound, evaluation: EvaluationPhase): void {
    if (active.evaluation !== evaluation) return;
    evaluation.cancelTimer();
    active.evaluation = null;
    evaluation.closed.resolve();
  }

  private checkStopped(): void {
    if (this.stopped) throw new SchedulerStopped('coordinator is shutting down');
  }

  // ---- site events ----

  private handleSiteReady(site: string): void {
    if (this.summary) {
      if (this.announcesDone()) this.sendDone(site);
      return;
    }
    if (this.quorum && this.sessions.readySites().length >= this.config.minSites) this.quorum.resolve();

    // A site that reconnects mid-round gets its pending task again.
    const training = this.active?.training;
    if (training && training.participants.has(site) && !training.accepted.has(site)) {
      this.sessions.send(site, COORDINATOR_EVENTS.trainTask, training.task);
    }
    const evaluation = this.active?.evaluation;
    if (evaluation && !evaluation.reported.has(site)) {
      evaluation.evaluators.add(site);
      this.sessions.send(site, COORDINATOR_EVENTS.evaluateTask, evaluation.task);
    }
  }

  /**
   * Stops waiting for a revoked site: its unfinished upload is dropped and
   * the round goes on without it. An update it had already sent stays in the
   * running sum, because the sum cannot give back one site's share.
   */
  private dropRevokedSite(site: string): void {
    this.uploads.dropSite(site);
    const active = this.active;
    if (!active) return;
    const training = active.training;
    if (training && training.participants.has(site)) {
      if (training.accepted.has(site)) {
        this.log.warn({ site, round: active.entity.number }, `site ${site} was revoked after its update for round ${active.entity.number} was accepted: the update stays in the aggregate`);
      } else {
        training.revoked.add(site);
        this.log.warn({ site, round: active.entity.number }, `site ${site} was revoked: round ${active.entity.number} goes on without its update`);
        this.maybeCloseTraining(active, training);
      }
    }
    const evaluation = active.evaluation;
    if (evaluation && evaluation.evaluators.delete(site) && [...evaluation.evaluators].every((s) => evaluation.reported.has(s))) {
      this.closeEvaluation(active, evaluation);
    }
  }

  /** Sends federation:done and logs whether the site acknowledged it. */
  private sendDone(site: string): void {
    const summary = this.summary!;
    const done = { experiment: summary.experiment, rounds: summary.rounds, finalModelVersion: summary.finalModelVersion };
    void this.sessions.sendDone(site, done, DONE_ACK_TIMEOUT_MS).then((acknowledged) => {
      if (acknowledged) this.log.info({ site }, `site ${site} acknowledged federation:done`);
      else this.log.warn({ site }, `site ${site} did not acknowledge federation:done within ${DONE_ACK_TIMEOUT_MS} ms; it receives it again after its next site:hello`);
    });
  }

  /**
   * Checks that `site` may send an update for `round` trained from `modelVersion`.
   * @throws ProtocolError `stale_round`, `wrong_model_version`, `not_participant` or `duplicate_update`.
   */
  private admit(site: string, round: number, modelVersion: number): TrainingPhase {
    const training = this.active?.training;
    if (!training || this.active!.entity.number !== round) {
      const open = training ? `round ${this.active!.entity.number} is open for updates` : 'no round is open for updates';
      throw new ProtocolError('stale_round', `update for round ${round} from site ${site} rejected: ${open}`);
    }
    if (modelVersion !== training.task.modelVersion) {
      throw new ProtocolError(
        'wrong_model_version',
        `update from site ${site} was trained from model version ${modelVersion}, round ${round} trains from version ${training.task.modelVersion}`,
      );
    }
    if (!training.participants.has(site)) {
      throw new ProtocolError('not_participant', `site ${site} is not a participant of round ${round}; it can join the next round`);
    }
    if (training.accepted.has(site) || training.committing.has(site)) {
      throw new ProtocolError('duplicate_update', `an update from site ${site} for round ${round} was already accepted`);
    }
    return training;
  }

  /**
   * Returns whether the update of `site` for `round` with content hash
   * `sha256` is already accepted, in the open round or an earlier one. An
   * update is identified by experiment, round, site and SHA-256, so a resend
   * after a lost acknowledgement is recognised and not counted twice.
   * @throws ProtocolError `conflicting_update` when the site's accepted update for the round has another SHA-256.
   */
  private async isAccepted(site: string, round: number, sha256: string): Promise<boolean> {
    const training = this.active?.training;
    const acceptedSha =
      training && this.active!.entity.number === round ? training.accepted.get(site) : (await this.records.findUpdate(round, site))?.sha256;
    if (acceptedSha === undefined) return false;
    if (acceptedSha === sha256) return true;
    throw new ProtocolError(
      'conflicting_update',
      `update from site ${site} for round ${round} has SHA-256 ${sha256}, but its update with SHA-256 ${acceptedSha} was already accepted: dropped`,
    );
  }

  /**
   * Starts an update upload after checking it is admissible, or resumes the
   * site's unfinished upload of the same update from the next chunk.
   * @throws ProtocolError with the reason the update cannot be sent.
   */
  async beginUpdate(site: string, begin: UpdateBegin): Promise<UpdateBeginReply> {
    if (await this.isAccepted(site, begin.round, begin.payload.sha256)) {
      this.log.info({ site, round: begin.round, sha256: begin.payload.sha256 }, `update from site ${site} for round ${begin.round} is already accepted: acknowledged as a duplicate`);
      return { uploadId: '', nextIndex: begin.payload.chunkCount, duplicate: true };
    }
    this.admit(site, begin.round, begin.modelVersion);
    // FedAvg weighs an update by its exam count, so a site may not claim more
    // training exams than its hello declared on this connection.
    const hello = this.sessions.helloOf(site);
    const declared = hello ? hello.trainExams.covid19 + hello.trainExams.cap + hello.trainExams.non_pneumonia : 0;
    if (begin.numExamples > declared) {
      this.log.warn({ site, round: begin.round, numExamples: begin.numExamples, declared }, `update from site ${site} rejected: exam count above its hello`);
      throw new ProtocolError(
        'invalid_message',
        `update from site ${site} claims ${begin.numExamples} training exams, its site:hello declared ${declared}: dropped, round ${begin.round} continues`,
      );
    }
    const upload = await this.uploads.start(site, begin, this.models.maxUpdateBytes);
    this.log.debug(
      { site, round: begin.round, uploadId: upload.id, bytes: begin.payload.byteLength, chunks: begin.payload.chunkCount, nextIndex: upload.file.nextIndex },
      `site ${site} started an update upload for round ${begin.round}`,
    );
    return { uploadId: upload.id, nextIndex: upload.file.nextIndex };
  }

  /** Returns whether `site` has the unfinished upload `uploadId` in this experiment. */
  hasUpload(site: string, uploadId: string): boolean {
    return this.uploads.has(site, uploadId);
  }

  /** Writes one chunk to the upload's file; a chunk below `nextIndex` is a resend and is ignored. */
  async addUpdateChunk(site: string, chunk: UpdateChunk): Promise<{ nextIndex: number }> {
    const upload = this.uploads.get(site, chunk.uploadId);
    return { nextIndex: await upload.file.add(chunk.index, chunk.data) };
  }

  /**
   * Verifies a finished upload, stores it durably and records it, then adds
   * it to the round's aggregator. Only then is the update acknowledged, so
   * an acknowledged update survives a crash of the coordinator. A FedAvg
   * update is folded once no other commit is queued, together with every
   * update accepted meanwhile, or when the round closes.
   * @throws ProtocolError with the reason the update is rejected; the round goes on without it.
   */
  commitUpdate(site: string, commit: UpdateCommit): Promise<UpdateCommitReply> {
    const upload = this.uploads.take(site, commit.uploadId);
    this.commitsInFlight += 1;
    const result = this.commits.then(() => this.commitInOrder(site, upload));
    this.commits = result.catch(() => {});
    return this.acknowledgeWhenFolded(result);
  }

  private async acknowledgeWhenFolded(commit: Promise<{ reply: UpdateCommitReply; folded: Promise<void> | null }>): Promise<UpdateCommitReply> {
    let outcome;
    try {
      outcome = await commit;
    } finally {
      this.commitsInFlight -= 1;
      const training = this.active?.training;
      if (this.commitsInFlight === 0 && training) {
        try {
          this.foldWaiting(training);
        } catch (error) {
          // The waiting commits receive the error; the round loop raises it again at close.
          this.log.error({ round: this.active?.entity.number, err: error }, 'folding the waiting updates failed');
        }
      }
    }
    await outcome.folded;
    return outcome.reply;
  }

  /** Folds the training phase's waiting FedAvg updates in one batched pass. @throws Error when a stored file cannot be read. */
  private foldWaiting(training: TrainingPhase): void {
    if (!training.folds || training.folds.size === 0) return;
    const folded = training.folds.flush();
    if (folded > 1) this.log.debug({ round: training.task.round, updates: folded }, `${folded} waiting updates folded in one batched pass`);
  }

  private async commitInOrder(site: string, upload: Upload): Promise<{ reply: UpdateCommitReply; folded: Promise<void> | null }> {
    try {
      return await this.storeAndFold(site, upload);
    } finally {
      // Removes the file unless it was accepted and moved; a file left behind is removed at the next start.
      await upload.file.discard().catch((error: Error) => {
        this.log.warn({ site, uploadId: upload.id, err: error }, `deleting the upload file ${upload.file.path} failed`);
      });
    }
  }

  private async storeAndFold(site: string, upload: Upload): Promise<{ reply: UpdateCommitReply; folded: Promise<void> | null }> {
    const { round, modelVersion, numExamples, trainLoss } = upload.begin;
    const sha256 = upload.begin.payload.sha256;
    if (await this.isAccepted(site, round, sha256)) {
      this.log.info({ site, round, sha256 }, `update from site ${site} for round ${round} is already accepted: acknowledged as a duplicate`);
      return { reply: { accepted: true, duplicate: true }, folded: null };
    }
    const admitted = this.admit(site, round, modelVersion);

    let decoded;
    let distance: number | null = null;
    try {
      await upload.file.finish();
      decoded = decodeWeights(await readFile(upload.file.path));
      distance = this.checkUpdate(site, round, admitted, decoded.tensors);
    } catch (error) {
      // The round lists the code when the site ends up left out.
      if (error instanceof ProtocolError) admitted.rejected.set(site, error.code);
      throw error;
    }

    const training = this.admit(site, round, modelVersion);
    training.committing.add(site);
    let path: string | null = null;
    let row;
    try {
      path = await this.updateFiles.accept(upload.file, round, site);
      row = await this.records.insertUpdate({ round, site, sha256, numExamples, trainLoss, payloadPath: path });
    } catch (error) {
      if (path !== null) await this.updateFiles.removeAccepted(path);
      throw error;
    } finally {
      training.committing.delete(site);
    }
    // The deadline may have closed the round while the file and the row were written.
    try {
      this.admit(site, round, modelVersion);
    } catch (error) {
      await this.records.deleteUpdate(row);
      await this.updateFiles.removeAccepted(path);
      throw error;
    }

    // A FedAvg update waits on disk until the commits queued behind it are
    // done (see acknowledgeWhenFolded); its decoded tensors are dropped here.
    let folded: Promise<void> | null = null;
    if (training.folds) folded = training.folds.push(new StoredUpdate(this.updateFiles.acceptedFile(path), numExamples, this.models.layout, decoded));
    else training.accumulator.add(decoded.tensors, numExamples);
    training.accepted.set(site, sha256);
    training.rejected.delete(site);
    if (distance !== null) training.distances.push(distance);
    this.log.info(
      { site, round, sha256, numExamples, trainLoss, accepted: training.accepted.size, participants: training.participants.size },
      `update from site ${site} accepted for round ${round}`,
    );
    this.maybeCloseTraining(this.active!, training);
    return { reply: { accepted: true }, folded };
  }

  /**
   * Checks a decoded update's layout, values and distance from the global
   * model, and returns that distance when a norm bound is set.
   * @throws ProtocolError `weights_mismatch`, `weights_not_finite` or `update_norm_outlier`.
   */
  private checkUpdate(site: string, round: number, training: TrainingPhase, tensors: NamedTensor[]): number | null {
    const mismatch = layoutMismatch(this.models.layout, tensors);
    if (mismatch) {
      throw new ProtocolError('weights_mismatch', `update from site ${site}: ${mismatch}: dropped, round ${round} continues`);
    }
    const nonFinite = firstNonFinite(tensors);
    if (nonFinite) {
      throw new ProtocolError(
        'weights_not_finite',
        `update from site ${site}: tensor ${nonFinite} contains NaN or an infinite value: dropped, round ${round} continues`,
      );
    }
    if (!training.globalTensors) return null;
    const distance = updateDistance(training.globalTensors, tensors);
    const violation = this.normCheck.violation(distance);
    if (violation) {
      throw new ProtocolError('update_norm_outlier', `update from site ${site}: ${violation}: dropped, round ${round} continues`);
    }
    return distance;
  }

  /**
   * Stores a site's evaluation of the round's new model version.
   * @throws ProtocolError `stale_round`, `wrong_model_version` or `not_participant`.
   */
  async reportMetrics(site: string, report: MetricsReport): Promise<void> {
    const active = this.active;
    const evaluation = active?.evaluation;
    if (!active || !evaluation || active.entity.number !== report.round) {
      throw new ProtocolError('stale_round', `metrics for round ${report.round} from site ${site} rejected: no evaluation of that round is open`);
    }
    if (report.modelVersion !== evaluation.task.modelVersion) {
      throw new ProtocolError(
        'wrong_model_version',
        `metrics from site ${site} are for model version ${report.modelVersion}, round ${report.round} evaluates version ${evaluation.task.modelVersion}`,
      );
    }
    if (!evaluation.evaluators.has(site)) {
      throw new ProtocolError('not_participant', `site ${site} was not asked to evaluate round ${report.round}`);
    }
    await this.metrics.store(site, report);
    evaluation.reported.add(site);
    this.log.info(
      { site, round: report.round, modelVersion: report.modelVersion, auc: report.metrics.auc, valExams: report.metrics.valExams },
      `metrics from site ${site} stored for round ${report.round}`,
    );
    if ([...evaluation.evaluators].every((s) => evaluation.reported.has(s))) this.closeEvaluation(active, evaluation);
  }
}
