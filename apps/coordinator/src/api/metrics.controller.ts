import { Controller, Get, Inject } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { MetricsService } from '../metrics/metrics.service';

@ApiTags('metrics')
@ApiBearerAuth()
@Controller('metrics')
export class MetricsController {
  constructor(@Inject(MetricsService) private readonly metrics: MetricsService) {}

  @Get('auc')
  @ApiOperation({ summary: 'Per-site and pooled validation AUC by round for each class, with the pooled 95 % interval' })
  aucSeries() {
    return this.metrics.aucSeries();
  }
}
