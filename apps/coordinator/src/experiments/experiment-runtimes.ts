import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import type { Logger } from 'pino';
import { ProtocolError } from '@covnet/protocol';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/config';
import { ROOT_LOGGER } from '../logging/logger';
import { ExperimentEntity, ModelVersionEntity, RoundEntity, SiteMetricEntity, UpdateEntity } from '../persistence/entities';
import { CoordinatorEvents } from '../events/coordinator-events';
import { Clock } from '../clock';
import { CheckpointFiles } from '../models/checkpoint-files';
import { ModelStore } from '../models/model-store.service';
import { MetricsService } from '../metrics/metrics.service';
import { RoundRecords } from '../rounds/round-records';
import { UpdateFiles } from '../rounds/update-files';
import { RoundScheduler, type FederationSummary } from '../rounds/round-scheduler.service';
import { SiteSessions } from '../sites/site-sessions';
import { ExperimentActionError, ExperimentService } from './experiment.service';
import { withSettings } from './consortium-config';
import type { ExperimentAction } from './experiment-state';
import type { ExperimentSettings } from './experiment-settings';

/** The services of one experiment run by this coordinator, each bound to that experiment's configuration. */
export interface ExperimentRuntime {
  name: string;
  config: CoordinatorConfig;
  experiment: ExperimentService;
  models: ModelStore;
  metrics: MetricsService;
  records: RoundRecords;
  scheduler: RoundScheduler;
  /** Set by `run`: resolves when the experiment's last round is done. */
  done: Promise<FederationSummary> | null;
}

/** Thrown for an experiment name this coordinator does not run. */
export class UnknownExperimentError extends Error {
  override name = 'UnknownExperimentError';
}

/**
 * The experiments this coordinator runs, in the order they were added. The
 * first one is the default for REST reads without `?experiment=` and for
 * agent messages without an `experiment` field.
 */
@Injectable()
export class ExperimentRuntimes implements OnApplicationShutdown {
  private readonly runtimes = new Map<string, ExperimentRuntime>();
  private readonly finishedOrder: string[] = [];
  private readonly log: Logger;
  private shuttingDown = false;

  constructor(
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    @Inject(ROOT_LOGGER) private readonly rootLogger: Logger,
    @InjectRepository(ExperimentEntity) private readonly experimentRows: Repository<ExperimentEntity>,
    @InjectRepository(ModelVersionEntity) private readonly versionRows: Repository<ModelVersionEntity>,
    @InjectRepository(SiteMetricEntity) private readonly metricRows: Repository<SiteMetricEntity>,
    @InjectRepository(RoundEntity) private readonly roundRows: Repository<RoundEntity>,
    @InjectRepository(UpdateEntity) private readonly updateRows: Repository<UpdateEntity>,
    @Inject(CheckpointFiles) private readonly files: CheckpointFiles,
    @Inject(SiteSessions) private readonly sessions: SiteSessions,
    @Inject(Clock) private readonly clock: Clock,
    @Inject(CoordinatorEvents) private readonly events: CoordinatorEvents,
  ) {
    this.log = rootLogger.child({ context: 'experiments' });
  }

  /**
   * Records each experiment and loads its global model, in order. Only a
   * single experiment writes new checkpoints straight into `<data dir>/checkpoints`.
   * @throws Error when an experiment's initial model cannot be used.
   */
  async init(configs: CoordinatorConfig[]): Promise<void> {
    const shared = configs.length === 1;
    for (const config of configs) await this.add(config, shared);
  }

  /** Starts the round loop of every experiment that is not running yet; returns each experiment's outcome, in order. */
  runAll(): Promise<FederationSummary>[] {
    return [...this.runtimes.values()].map((runtime) => this.run(runtime));
  }

  /**
   * Returns the experiment `name`, or the first one when `name` is undefined.
   * @throws UnknownExperimentError when this coordinator does not run `name`.
   */
  get(name?: string): ExperimentRuntime {
    const runtime = name === undefined ? this.runtimes.values().next().value : this.runtimes.get(name);
    if (!runtime) {
      throw new UnknownExperimentError(`experiment ${name} is not run by this coordinator, which runs ${this.names().join(', ')}`);
    }
    return runtime;
  }

  /**
   * Returns the experiment a site message names, or the first one.
   * @throws ProtocolError `invalid_message` for an experiment this coordinator does not run.
   */
  forMessage(site: string, name: string | undefined): ExperimentRuntime {
    try {
      return this.get(name);
    } catch (error) {
      if (!(error instanceof UnknownExperimentError)) throw error;
      throw new ProtocolError('invalid_message', `message from site ${site} names ${error.message}`);
    }
  }

  /** Returns the experiment that contains the unfinished upload `uploadId` of `site`, or the first one. */
  forUpload(site: string, uploadId: string): ExperimentRuntime {
    return [...this.runtimes.values()].find((runtime) => runtime.scheduler.hasUpload(site, uploadId)) ?? this.get();
  }

  names(): string[] {
    return [...this.runtimes.keys()];
  }

  /** Sites that took part in a round of any experiment this coordinator runs, in name order. */
  async participants(): Promise<string[]> {
    const sites = new Set<string>();
    for (const runtime of this.runtimes.values()) {
      for (const round of await runtime.records.list()) for (const site of round.participants) sites.add(site);
    }
    return [...sites].sort();
  }

  /** Rows of every experiment in the database, including those run by other coordinators. */
  async list(): Promise<ExperimentEntity[]> {
    return this.get().experiment.list();
  }

  /** Stores a new experiment in state `created`. @throws ExperimentActionError `conflict` for a taken name. */
  async create(settings: ExperimentSettings): Promise<ExperimentEntity> {
    return this.get().experiment.create(settings);
  }

  /**
   * Applies start, pause or stop to experiment `name`. Starting a stored
   * experiment that this coordinator does not run yet loads it from its
   * stored settings and runs its rounds here.
   * @throws ExperimentActionError `not_found` for an unknown experiment, `conflict` when the action does not apply.
   * @throws Error when the stored experiment's initial model cannot be used.
   */
  async act(name: string, action: ExperimentAction): Promise<ExperimentEntity> {
    const running = this.runtimes.get(name);
    if (running) return running.experiment.act(name, action);

    const row = await this.experimentRows.findOne({ where: { name } });
    if (!row) throw new ExperimentActionError('not_found', `experiment ${name} does not exist`);
    if (action !== 'start') {
      throw new ExperimentActionError('not_found', `experiment ${name} is not run by this coordinator, which runs ${this.names().join(', ')}; start it first`);
    }
    if (row.state !== 'created' && row.state !== 'paused') throw new ExperimentActionError('conflict', `cannot start experiment ${name}: it is ${row.state}`);

    const config = withSettings(this.config, row.settings);
    // Any experiment added after the start gets its own checkpoint folder,
    // because the first one may already use the shared folder.
    const runtime = await this.add({ ...config, experimentsFile: null, roundFlagsGiven: true }, false);
    const started = await runtime.experiment.act(name, 'start');
    this.run(runtime).catch(() => {});
    return started;
  }

  onApplicationShutdown(): void {
    this.shuttingDown = true;
    for (const runtime of this.runtimes.values()) {
      runtime.scheduler.onApplicationShutdown();
      runtime.experiment.onApplicationShutdown();
    }
  }

  private async add(config: CoordinatorConfig, sharedCheckpointDir: boolean): Promise<ExperimentRuntime> {
    const own = { ...config };
    const experiment = new ExperimentService(own, this.rootLogger, this.experimentRows, this.clock, this.events);
    // The experiment first: a stored experiment's settings decide what the model store checks.
    await experiment.init();
    const models = new ModelStore(own, this.rootLogger, this.versionRows, this.files, this.clock, this.events);
    models.sharedCheckpointDir = sharedCheckpointDir;
    await models.init();
    const metrics = new MetricsService(own, this.metricRows, this.clock, this.events);
    const records = new RoundRecords(own, this.roundRows, this.updateRows, this.metricRows, this.clock, this.events);
    const updateFiles = new UpdateFiles(own.dataDir, own.experiment);
    const scheduler = new RoundScheduler(own, this.rootLogger, models, metrics, this.sessions, records, this.clock, this.events, experiment, updateFiles);
    scheduler.onFinished = () => this.finishedOrder.push(own.experiment);
    scheduler.announcesDone = () => this.finishedOrder.length === this.runtimes.size && this.finishedOrder.at(-1) === own.experiment;
    const runtime: ExperimentRuntime = { name: own.experiment, config: own, experiment, models, metrics, records, scheduler, done: null };
    this.runtimes.set(own.experiment, runtime);
    return runtime;
  }

  private run(runtime: ExperimentRuntime): Promise<FederationSummary> {
    if (runtime.done) return runtime.done;
    if (this.shuttingDown) return Promise.reject(new Error('coordinator is shutting down'));
    runtime.done = runtime.scheduler.run();
    runtime.done.catch((error: Error) => {
      const log = this.log.child({ experiment: runtime.name });
      if (error.name === 'SchedulerStopped') log.info(`round loop of experiment ${runtime.name} stopped before it finished`);
      else log.error({ err: error }, `round loop of experiment ${runtime.name} failed`);
    });
    return runtime.done;
  }
}
