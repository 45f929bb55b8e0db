import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/config';
import { RoundEntity, SiteMetricEntity, UpdateEntity } from '../persistence/entities';
import { CoordinatorEvents } from '../events/coordinator-events';
import { Clock } from '../clock';
import type { RoundState } from './round-state';

/** Rows of the rounds and updates tables for the configured experiment. */
@Injectable()
export class RoundRecords {
  constructor(
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    @InjectRepository(RoundEntity) private readonly rounds: Repository<RoundEntity>,
    @InjectRepository(UpdateEntity) private readonly updates: Repository<UpdateEntity>,
    @InjectRepository(SiteMetricEntity) private readonly metrics: Repository<SiteMetricEntity>,
    @Inject(Clock) private readonly clock: Clock,
    @Inject(CoordinatorEvents) private readonly events: CoordinatorEvents,
  ) {}

  /** Returns the number of the first round that is not done: 1 for a new experiment. */
  async firstRoundToRun(): Promise<number> {
    const done = await this.rounds.find({ where: { experiment: this.config.experiment, state: 'done' } });
    return done.reduce((max, round) => Math.max(max, round.number), 0) + 1;
  }

  /**
   * Creates round `number` in `waiting_for_quorum`. A row that an earlier
   * process left waiting for a quorum has no accepted update, so it is reset
   * and any metrics or update rows of the number are deleted. Rounds left in
   * a later state are resumed instead (see `RoundScheduler`).
   */
  async open(number: number, modelVersionIn: number): Promise<RoundEntity> {
    const experiment = this.config.experiment;
    const existing = await this.rounds.findOne({ where: { experiment, number } });
    if (existing) {
      await this.updates.delete({ experiment, round: number });
      await this.metrics.delete({ experiment, round: number });
    }
    const round = existing ?? this.rounds.create({ experiment, number });
    Object.assign(round, {
      state: 'waiting_for_quorum' satisfies RoundState,
      modelVersionIn,
      modelVersionOut: null,
      participants: [],
      leftOut: [],
      startedAt: this.clock.nowIso(),
      endedAt: null,
    });
    const saved = await this.rounds.save(round);
    this.events.changed('rounds');
    return saved;
  }

  /** Persists `round` in `state`, with whatever other fields the caller changed. */
  async transition(round: RoundEntity, state: RoundState): Promise<void> {
    round.state = state;
    if (state === 'done') round.endedAt = this.clock.nowIso();
    await this.save(round);
  }

  async save(round: RoundEntity): Promise<void> {
    await this.rounds.save(round);
    this.events.changed('rounds');
  }

  async insertUpdate(update: Omit<UpdateEntity, 'id' | 'experiment' | 'acceptedAt'>): Promise<UpdateEntity> {
    const row = this.updates.create({ ...update, experiment: this.config.experiment, acceptedAt: this.clock.nowIso() });
    return this.updates.save(row);
  }

  /** Returns the accepted update of `site` in `round`, if any. */
  async findUpdate(round: number, site: string): Promise<UpdateEntity | null> {
    return this.updates.findOne({ where: { experiment: this.config.experiment, round, site } });
  }

  /** Returns the accepted updates of `round` in the order they were accepted. */
  async updatesOf(round: number): Promise<UpdateEntity[]> {
    return this.updates.find({ where: { experiment: this.config.experiment, round }, order: { id: 'ASC' } });
  }

  /** Records that the update files of `round` are deleted, once its checkpoint is recorded. */
  async releaseUpdates(round: number): Promise<void> {
    await this.updates.update({ experiment: this.config.experiment, round }, { payloadPath: null });
  }

  async deleteUpdate(row: UpdateEntity): Promise<void> {
    await this.updates.delete({ id: row.id });
  }

  async list(): Promise<RoundEntity[]> {
    return this.rounds.find({ where: { experiment: this.config.experiment }, order: { number: 'ASC' } });
  }

  async find(number: number): Promise<RoundEntity | null> {
    return this.rounds.findOne({ where: { experiment: this.config.experiment, number } });
  }
}
