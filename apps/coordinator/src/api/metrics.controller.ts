import { Controller, Get, Inject, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ExperimentRuntimes } from '../experiments/experiment-runtimes';
import { ApiExperimentQuery, experimentOfQuery } from './experiment-query';

@ApiTags('metrics')
@ApiBearerAuth()
@Controller('metrics')
export class MetricsController {
  constructor(@Inject(ExperimentRuntimes) private readonly runtimes: ExperimentRuntimes) {}

  @Get('auc')
  @ApiOperation({ summary: 'Per-site and pooled validation AUC by round for each class, with the pooled 95 % interval' })
  @ApiExperimentQuery()
  aucSeries(@Query('experiment') experiment?: string) {
    return experimentOfQuery(this.runtimes, experiment).metrics.aucSeries();
  }
}
