import { Controller, Get, Inject, NotFoundException, Param } from '@nestjs/common';
import { RoundRecords } from '../rounds/round-records';
import { MetricsService } from '../metrics/metrics.service';
import { parseRoundNumber } from './round-number';

@Controller('rounds')
export class RoundsController {
  constructor(
    @Inject(RoundRecords) private readonly records: RoundRecords,
    @Inject(MetricsService) private readonly metrics: MetricsService,
  ) {}

  @Get()
  async list() {
    const rounds = await this.records.list();
    return rounds.map((round) => ({
      round: round.number,
      state: round.state,
      modelVersionIn: round.modelVersionIn,
      modelVersionOut: round.modelVersionOut,
      participants: round.participants,
      leftOut: round.leftOut,
      startedAt: round.startedAt,
      endedAt: round.endedAt,
    }));
  }

  /** Per-site metrics of the round's new model version and the AUC pooled over all sites. */
  @Get(':n/metrics')
  async metricsOf(@Param('n') n: string) {
    const number = parseRoundNumber(n);
    const round = await this.records.find(number);
    if (!round) throw new NotFoundException(`round ${number} does not exist`);
    return this.metrics.forRound(number, round.modelVersionOut);
  }
}
