import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import type { Logger } from 'pino';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/config';
import { ROOT_LOGGER } from '../logging/logger';
import { ExperimentEntity } from '../persistence/entities';
import { CoordinatorEvents } from '../events/coordinator-events';
import { Clock } from '../clock';
import { Deferred } from '../rounds/deferred';
import { applyAction, type ExperimentAction, type ExperimentState } from './experiment-state';
import type { ExperimentSettings } from './experiment-settings';
import { withSettings } from './consortium-config';

/** Raised to the round loop when its experiment is stopped. */
export class ExperimentStopped extends Error {
  override name = 'ExperimentStopped';
}

/** Thrown when an action does not apply to the experiment's state or the experiment is unknown. */
export class ExperimentActionError extends Error {
  constructor(
    readonly reason: 'not_found' | 'conflict',
    message: string,
  ) {
    super(message);
  }
}

/**
 * One experiment this coordinator runs and its state in the
 * `experiments` table; ExperimentRuntimes creates one per experiment. Pause and stop take effect before a round's training
 * starts. A round already training finishes first, so its update sum is not
 * thrown away.
 */
@Injectable()
export class ExperimentService implements OnApplicationShutdown {
  private row: ExperimentEntity | null = null;
  private resumed: Deferred<void> | null = null;
  private readonly log: Logger;

  constructor(
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    @Inject(ROOT_LOGGER) rootLogger: Logger,
    @InjectRepository(ExperimentEntity) private readonly experiments: Repository<ExperimentEntity>,
    @Inject(Clock) private readonly clock: Clock,
    @Inject(CoordinatorEvents) private readonly events: CoordinatorEvents,
  ) {
    this.log = rootLogger.child({ context: 'experiments', experiment: config.experiment });
  }

  /**
   * Records the configured experiment with its settings, or loads its stored
   * state. An experiment created over the REST API and started here without a
   * consortium file or round flags runs with its stored settings, which
   * replace the flag defaults in the shared configuration.
   */
  async init(): Promise<void> {
    const existing = await this.experiments.findOne({ where: { name: this.config.experiment } });
    if (existing && this.config.experimentsFile === null && !this.config.roundFlagsGiven) {
      Object.assign(this.config, withSettings(this.config, existing.settings));
    }
    const settings = settingsFromConfig(this.config);
    const now = this.clock.nowIso();
    if (existing) {
      existing.settings = settings;
      existing.updatedAt = now;
      this.row = await this.experiments.save(existing);
    } else {
      this.row = await this.experiments.save(this.experiments.create({ name: settings.name, state: 'running', settings, createdAt: now, updatedAt: now }));
    }
    this.log.info({ state: this.row.state }, `experiment ${settings.name} is ${this.row.state}`);
  }

  /**
   * Stores a new experiment in state `created`. Once started, it runs with
   * these settings in this coordinator or in one started with `--experiment NAME`.
   * @throws ExperimentActionError `conflict` when an experiment of that name exists.
   */
  async create(settings: ExperimentSettings): Promise<ExperimentEntity> {
    if (await this.experiments.findOne({ where: { name: settings.name } })) {
      throw new ExperimentActionError('conflict', `experiment ${settings.name} already exists`);
    }
    const now = this.clock.nowIso();
    const row = await this.experiments.save(this.experiments.create({ name: settings.name, state: 'created', settings, createdAt: now, updatedAt: now }));
    this.log.info({ created: settings.name }, `experiment ${settings.name} created`);
    this.events.changed('experiments');
    return row;
  }

  async list(): Promise<ExperimentEntity[]> {
    return this.experiments.find({ order: { id: 'ASC' } });
  }

  get state(): ExperimentState {
    return this.current.state;
  }

  /**
   * Applies start, pause or stop to the experiment `name`.
   * @throws ExperimentActionError `not_found` for another experiment, `conflict` when the action does not apply.
   */
  async act(name: string, action: ExperimentAction): Promise<ExperimentEntity> {
    const row = this.current;
    if (name !== row.name) {
      throw new ExperimentActionError('not_found', `experiment ${name} is not run by this coordinator, which runs ${row.name}`);
    }
    const next = applyAction(row.state, action);
    if (next === null) throw new ExperimentActionError('conflict', `cannot ${action} experiment ${name}: it is ${row.state}`);
    await this.setState(next);
    if (next === 'running') this.resumed?.resolve();
    if (next === 'stopped') this.resumed?.reject(new ExperimentStopped(`experiment ${name} was stopped`));
    return this.current;
  }

  /**
   * Resolves when the next round may open: at once while running, after
   * `start` while paused.
   * @throws ExperimentStopped when the experiment is or becomes stopped.
   */
  async beforeRound(): Promise<void> {
    const state = this.current.state;
    if (state === 'stopped') throw new ExperimentStopped(`experiment ${this.current.name} was stopped`);
    // A created experiment waits for its first start like a paused one.
    if (state === 'running' || state === 'done') return;
    this.log.info(`experiment ${this.current.name} is ${state}: the next round waits for start`);
    this.resumed = new Deferred<void>();
    try {
      await this.resumed.promise;
    } finally {
      this.resumed = null;
    }
  }

  async markDone(): Promise<void> {
    await this.setState('done');
  }

  onApplicationShutdown(): void {
    this.resumed?.reject(new ExperimentStopped('coordinator is shutting down'));
  }

  private get current(): ExperimentEntity {
    if (!this.row) throw new Error('ExperimentService.init() has not run');
    return this.row;
  }

  private async setState(state: ExperimentState): Promise<void> {
    const row = this.current;
    row.state = state;
    row.updatedAt = this.clock.nowIso();
    this.row = await this.experiments.save(row);
    this.log.info(`experiment ${row.name} is ${state}`);
    this.events.changed('experiments');
  }
}

/** Settings of the running experiment, from the flags or the consortium file. */
export function settingsFromConfig(config: CoordinatorConfig): ExperimentSettings {
  return {
    name: config.experiment,
    rounds: config.rounds,
    minSites: config.minSites,
    fractionPerRound: config.fractionPerRound,
    roundDeadlineS: config.roundTimeoutS,
    localEpochs: config.epochs,
    batchSize: config.batchSize,
    learningRate: config.learningRate,
    strategy: config.strategy,
    evaluateEvery: config.evaluateEvery,
    // Absent aggregation fields keep the settings of a FedAvg experiment as they were stored before these fields existed.
    ...(config.aggregation.name === 'fedavg' ? {} : { aggregation: config.aggregation.name }),
    ...(config.aggregation.name === 'trimmed-mean' ? { trimFraction: config.aggregation.trimFraction } : {}),
    ...(config.maxUpdateNorm === null ? {} : { maxUpdateNorm: config.maxUpdateNorm }),
    ...(config.maxUpdateNormRatio === null ? {} : { maxUpdateNormRatio: config.maxUpdateNormRatio }),
    ...(config.backbone === null ? {} : { backbone: config.backbone as ExperimentSettings['backbone'] }),
    ...(config.inputSize === null ? {} : { inputSize: config.inputSize }),
    ...(config.initialModelNamed ? { initialModel: config.initialModelFile } : {}),
  };
}
