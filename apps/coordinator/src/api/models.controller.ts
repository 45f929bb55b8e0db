import { Controller, Get, Inject, NotFoundException, Param, StreamableFile, BadRequestException } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiParam, ApiProduces, ApiTags } from '@nestjs/swagger';
import { ModelStore } from '../models/model-store.service';
import { MetricsService } from '../metrics/metrics.service';

@ApiTags('models')
@ApiBearerAuth()
@Controller('models')
export class ModelsController {
  constructor(
    @Inject(ModelStore) private readonly models: ModelStore,
    @Inject(MetricsService) private readonly metrics: MetricsService,
  ) {}

  @Get()
  @ApiOperation({ summary: 'Model versions with SHA-256, size, pooled validation AUC and which one is best' })
  async list() {
    const [versions, scores, best] = await Promise.all([this.models.list(), this.metrics.versionScores(), this.metrics.bestVersion()]);
    const scoreOf = new Map(scores.map((score) => [score.modelVersion, score.meanPooledAuc]));
    return versions.map((v) => ({
      version: v.version,
      round: v.round,
      sha256: v.sha256,
      byteLength: v.byteLength,
      createdAt: v.createdAt,
      meanPooledAuc: scoreOf.get(v.version) ?? null,
      best: best?.modelVersion === v.version,
      downloadUrl: `/api/models/${v.version}/download`,
    }));
  }

  @Get('best')
  @ApiOperation({ summary: 'The version with the highest pooled validation AUC (mean over classes)' })
  async best() {
    const best = await this.metrics.bestVersion();
    if (!best) throw new NotFoundException('no model version has been evaluated yet');
    return best;
  }

  @Get(':version/download')
  @ApiOperation({ summary: 'The checkpoint of a version in the CVNW weight format; X-Checksum-SHA256 carries its digest' })
  @ApiParam({ name: 'version', type: Number })
  @ApiProduces('application/octet-stream')
  async download(@Param('version') segment: string): Promise<StreamableFile> {
    if (!/^(0|[1-9][0-9]{0,8})$/.test(segment)) throw new BadRequestException(`version must be a non-negative integer, got "${segment}"`);
    const version = Number(segment);
    const row = (await this.models.list()).find((v) => v.version === version);
    if (!row) throw new NotFoundException(`model version ${version} does not exist`);
    const payload = await this.models.checkpoint(version);
    return new StreamableFile(payload, {
      type: 'application/octet-stream',
      disposition: `attachment; filename="model-v${version}.cvnw"`,
      length: payload.byteLength,
    });
  }
}
