import { Controller, Get, Inject, NotFoundException, Param, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { ExperimentRuntimes } from '../experiments/experiment-runtimes';
import type { RoundEntity } from '../persistence/entities';
import { parseRoundNumber } from './round-number';
import { ApiExperimentQuery, experimentOfQuery } from './experiment-query';

@ApiTags('rounds')
@ApiBearerAuth()
@Controller('rounds')
export class RoundsController {
  constructor(@Inject(ExperimentRuntimes) private readonly runtimes: ExperimentRuntimes) {}

  @Get()
  @ApiOperation({ summary: "Each round's state, model versions in and out, participants, duration and the sites left out with the reason" })
  @ApiExperimentQuery()
  async list(@Query('experiment') experiment?: string) {
    const rounds = await experimentOfQuery(this.runtimes, experiment).records.list();
    return rounds.map(roundView);
  }

  @Get(':n')
  @ApiOperation({ summary: 'One round' })
  @ApiParam({ name: 'n', type: Number, description: 'round number, from 1' })
  @ApiExperimentQuery()
  async one(@Param('n') n: string, @Query('experiment') experiment?: string) {
    const number = parseRoundNumber(n);
    const round = await experimentOfQuery(this.runtimes, experiment).records.find(number);
    if (!round) throw new NotFoundException(`round ${number} does not exist`);
    return roundView(round);
  }

  /** Per-site metrics of the round's new model version and the AUC pooled over all sites. */
  @Get(':n/metrics')
  @ApiOperation({ summary: "Per-site AUC, loss and confusion matrix of the round's new version, and the pooled AUC with its 95 % interval" })
  @ApiParam({ name: 'n', type: Number, description: 'round number, from 1' })
  @ApiExperimentQuery()
  async metricsOf(@Param('n') n: string, @Query('experiment') experiment?: string) {
    const number = parseRoundNumber(n);
    const runtime = experimentOfQuery(this.runtimes, experiment);
    const round = await runtime.records.find(number);
    if (!round) throw new NotFoundException(`round ${number} does not exist`);
    return runtime.metrics.forRound(number, round.modelVersionOut);
  }
}

function roundView(round: RoundEntity) {
  return {
    round: round.number,
    state: round.state,
    modelVersionIn: round.modelVersionIn,
    modelVersionOut: round.modelVersionOut,
    participants: round.participants,
    leftOut: round.leftOut,
    startedAt: round.startedAt,
    endedAt: round.endedAt,
    durationS: round.endedAt === null ? null : (Date.parse(round.endedAt) - Date.parse(round.startedAt)) / 1000,
  };
}
