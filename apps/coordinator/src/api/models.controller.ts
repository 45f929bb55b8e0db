import { Controller, Get, Inject, NotFoundException, Param, Query, StreamableFile, BadRequestException } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiParam, ApiProduces, ApiTags } from '@nestjs/swagger';
import { ExperimentRuntimes } from '../experiments/experiment-runtimes';
import { ApiExperimentQuery, experimentOfQuery } from './experiment-query';
import { quoteInput } from './name-param';

@ApiTags('models')
@ApiBearerAuth()
@Controller('models')
export class ModelsController {
  constructor(@Inject(ExperimentRuntimes) private readonly runtimes: ExperimentRuntimes) {}

  @Get()
  @ApiOperation({ summary: 'Model versions with SHA-256, size, pooled validation AUC and which one is best' })
  @ApiExperimentQuery()
  async list(@Query('experiment') experiment?: string) {
    const { models, metrics, name } = experimentOfQuery(this.runtimes, experiment);
    const [versions, scores, best] = await Promise.all([models.list(), metrics.versionScores(), metrics.bestVersion()]);
    const scoreOf = new Map(scores.map((score) => [score.modelVersion, score.meanPooledAuc]));
    // The first experiment keeps the plain URL that clients used before a coordinator ran several.
    const query = name === this.runtimes.get().name ? '' : `?experiment=${encodeURIComponent(name)}`;
    return versions.map((v) => ({
      version: v.version,
      round: v.round,
      sha256: v.sha256,
      byteLength: v.byteLength,
      createdAt: v.createdAt,
      meanPooledAuc: scoreOf.get(v.version) ?? null,
      best: best?.modelVersion === v.version,
      downloadUrl: `/api/models/${v.version}/download${query}`,
    }));
  }

  @Get('best')
  @ApiOperation({ summary: 'The version with the highest pooled validation AUC (mean over classes)' })
  @ApiExperimentQuery()
  async best(@Query('experiment') experiment?: string) {
    const best = await experimentOfQuery(this.runtimes, experiment).metrics.bestVersion();
    if (!best) throw new NotFoundException('no model version has been evaluated yet');
    return best;
  }

  @Get(':version/download')
  @ApiOperation({ summary: 'The checkpoint of a version in the CVNW weight format; X-Checksum-SHA256 carries its digest' })
  @ApiParam({ name: 'version', type: Number })
  @ApiProduces('application/octet-stream')
  @ApiExperimentQuery()
  async download(@Param('version') segment: string, @Query('experiment') experiment?: string): Promise<StreamableFile> {
    if (!/^(0|[1-9][0-9]{0,8})$/.test(segment)) throw new BadRequestException(`version must be a non-negative integer, got ${quoteInput(segment)}`);
    const version = Number(segment);
    const { models } = experimentOfQuery(this.runtimes, experiment);
    const row = (await models.list()).find((v) => v.version === version);
    if (!row) throw new NotFoundException(`model version ${version} does not exist`);
    const payload = await models.checkpoint(version);
    return new StreamableFile(payload, {
      type: 'application/octet-stream',
      disposition: `attachment; filename="model-v${version}.cvnw"`,
      length: payload.byteLength,
    });
  }
}
