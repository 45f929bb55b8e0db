import { Controller, Get, Inject, NotFoundException, Param } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { RoundRecords } from '../rounds/round-records';
import { MetricsService } from '../metrics/metrics.service';
import type { RoundEntity } from '../persistence/entities';
import { parseRoundNumber } from './round-number';

@ApiTags('rounds')
@ApiBearerAuth()
@Controller('rounds')
export class RoundsController {
  constructor(
    @Inject(RoundRecords) private readonly records: RoundRecords,
    @Inject(MetricsService) private readonly metrics: MetricsService,
  ) {}

  @Get()
  @ApiOperation({ summary: "Each round's state, model versions in and out, participants, duration and the sites left out with the reason" })
  async list() {
    const rounds = await this.records.list();
    return rounds.map(roundView);
  }

  @Get(':n')
  @ApiOperation({ summary: 'One round' })
  @ApiParam({ name: 'n', type: Number, description: 'round number, from 1' })
  async one(@Param('n') n: string) {
    const number = parseRoundNumber(n);
    const round = await this.records.find(number);
    if (!round) throw new NotFoundException(`round ${number} does not exist`);
    return roundView(round);
  }

  /** Per-site metrics of the round's new model version and the AUC pooled over all sites. */
  @Get(':n/metrics')
  @ApiOperation({ summary: "Per-site AUC, loss and confusion matrix of the round's new version, and the pooled AUC with its 95 % interval" })
  @ApiParam({ name: 'n', type: Number, description: 'round number, from 1' })
  async metricsOf(@Param('n') n: string) {
    const number = parseRoundNumber(n);
    const round = await this.records.find(number);
    if (!round) throw new NotFoundException(`round ${number} does not exist`);
    return this.metrics.forRound(number, round.modelVersionOut);
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
