import { Controller, Get, Inject, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ExperimentRuntimes } from '../experiments/experiment-runtimes';
import { SiteRegistry } from '../sites/site-registry.service';
import { SiteSessions } from '../sites/site-sessions';
import { ApiExperimentQuery, experimentOfQuery } from './experiment-query';

@ApiTags('overview')
@ApiBearerAuth()
@Controller('overview')
export class OverviewController {
  constructor(
    @Inject(ExperimentRuntimes) private readonly runtimes: ExperimentRuntimes,
    @Inject(SiteRegistry) private readonly registry: SiteRegistry,
    @Inject(SiteSessions) private readonly sessions: SiteSessions,
  ) {}

  @Get()
  @ApiOperation({ summary: 'The consortium at a glance: experiment, rounds done, sites online, latest and best model version' })
  @ApiExperimentQuery()
  async overview(@Query('experiment') experiment?: string) {
    const runtime = experimentOfQuery(this.runtimes, experiment);
    const [sites, rounds, best] = await Promise.all([this.registry.list(), runtime.records.list(), runtime.metrics.bestVersion()]);
    const active = sites.filter((site) => site.revokedAt === null);
    return {
      experiment: runtime.name,
      experiments: this.runtimes.names(),
      state: runtime.experiment.state,
      roundsPlanned: runtime.config.rounds,
      roundsDone: rounds.filter((round) => round.state === 'done').length,
      openRound: runtime.scheduler.openRound,
      sitesOnline: active.filter((site) => this.sessions.isOnline(site.name)).length,
      sitesActive: active.length,
      latestModelVersion: runtime.models.current.version,
      bestModelVersion: best?.modelVersion ?? null,
      bestMeanPooledAuc: best?.meanPooledAuc ?? null,
    };
  }
}
