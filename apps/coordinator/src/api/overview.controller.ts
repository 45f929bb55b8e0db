import { Controller, Get, Inject } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/config';
import { ExperimentService } from '../experiments/experiment.service';
import { MetricsService } from '../metrics/metrics.service';
import { ModelStore } from '../models/model-store.service';
import { RoundRecords } from '../rounds/round-records';
import { RoundScheduler } from '../rounds/round-scheduler.service';
import { SiteRegistry } from '../sites/site-registry.service';
import { SiteSessions } from '../sites/site-sessions';

@ApiTags('overview')
@ApiBearerAuth()
@Controller('overview')
export class OverviewController {
  constructor(
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    @Inject(ExperimentService) private readonly experiment: ExperimentService,
    @Inject(SiteRegistry) private readonly registry: SiteRegistry,
    @Inject(SiteSessions) private readonly sessions: SiteSessions,
    @Inject(RoundRecords) private readonly records: RoundRecords,
    @Inject(RoundScheduler) private readonly scheduler: RoundScheduler,
    @Inject(ModelStore) private readonly models: ModelStore,
    @Inject(MetricsService) private readonly metrics: MetricsService,
  ) {}

  @Get()
  @ApiOperation({ summary: 'The consortium at a glance: experiment, rounds done, sites online, latest and best model version' })
  async overview() {
    const [sites, rounds, best] = await Promise.all([this.registry.list(), this.records.list(), this.metrics.bestVersion()]);
    const active = sites.filter((site) => site.revokedAt === null);
    return {
      experiment: this.config.experiment,
      state: this.experiment.state,
      roundsPlanned: this.config.rounds,
      roundsDone: rounds.filter((round) => round.state === 'done').length,
      openRound: this.scheduler.openRound,
      sitesOnline: active.filter((site) => this.sessions.isOnline(site.name)).length,
      sitesActive: active.length,
      latestModelVersion: this.models.current.version,
      bestModelVersion: best?.modelVersion ?? null,
      bestMeanPooledAuc: best?.meanPooledAuc ?? null,
    };
  }
}
