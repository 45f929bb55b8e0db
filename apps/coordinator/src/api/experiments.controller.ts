import { isAbsolute, relative, resolve } from 'node:path';
import { Body, ConflictException, Controller, Get, HttpCode, Inject, NotFoundException, Param, Post, BadRequestException, UnprocessableEntityException } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { ExperimentSettingsError, parseExperimentSettings } from '../experiments/experiment-settings';
import { ExperimentActionError } from '../experiments/experiment.service';
import { ExperimentRuntimes } from '../experiments/experiment-runtimes';
import type { ExperimentAction } from '../experiments/experiment-state';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/config';
import { InitialModelError } from '../models/model-store.service';
import { parseNameParam, quoteInput } from './name-param';

const ACTIONS: readonly ExperimentAction[] = ['start', 'pause', 'stop'];

@ApiTags('experiments')
@ApiBearerAuth()
@Controller('experiments')
export class ExperimentsController {
  constructor(
    @Inject(ExperimentRuntimes) private readonly experiments: ExperimentRuntimes,
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
  ) {}

  @Get()
  @ApiOperation({ summary: 'Experiments with their state and settings' })
  list() {
    return this.experiments.list();
  }

  @Post()
  @ApiOperation({ summary: 'Create an experiment from its settings, in state created; start runs it in this coordinator' })
  @ApiBody({
    schema: {
      type: 'object',
      required: ['name'],
      description: 'fields of one experiment of the consortium file; see apps/coordinator/README.md',
      example: { name: 'covnet-fedadam', rounds: 10, minSites: 3, strategy: { name: 'fedadam', serverLearningRate: 0.01 } },
    },
  })
  async create(@Body() body: unknown) {
    let settings;
    try {
      settings = parseExperimentSettings(body, 'experiment');
    } catch (error) {
      if (error instanceof ExperimentSettingsError) throw new BadRequestException(error.message);
      throw error;
    }
    if (settings.initialModel !== undefined) settings.initialModel = this.initialModelInDataDir(settings.initialModel);
    try {
      return await this.experiments.create(settings);
    } catch (error) {
      if (error instanceof ExperimentActionError) throw new ConflictException(error.message);
      throw error;
    }
  }

  @Post(':name/:action')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Start (or resume), pause or stop an experiment; pause and stop take effect before the next round trains. Starting a stored experiment runs it in this coordinator.',
  })
  @ApiParam({ name: 'name', type: String })
  @ApiParam({ name: 'action', enum: ['start', 'pause', 'stop'] })
  async act(@Param('name') name: string, @Param('action') action: string) {
    const experiment = parseNameParam('experiment name', name);
    if (!ACTIONS.includes(action as ExperimentAction)) throw new BadRequestException(`action must be one of ${ACTIONS.join(', ')}, got ${quoteInput(action)}`);
    try {
      return await this.experiments.act(experiment, action as ExperimentAction);
    } catch (error) {
      if (error instanceof ExperimentActionError) {
        throw error.reason === 'not_found' ? new NotFoundException(error.message) : new ConflictException(error.message);
      }
      if (error instanceof InitialModelError) throw new UnprocessableEntityException(error.message);
      throw error;
    }
  }

  // Over REST, an initial model must lie in the coordinator's data folder, so that the admin
  // token reads no other file of the host. A consortium file may name any path.
  private initialModelInDataDir(initialModel: string): string {
    const dataDir = resolve(this.config.dataDir);
    const path = resolve(dataDir, initialModel);
    const inside = relative(dataDir, path);
    if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) {
      throw new BadRequestException(`experiment: initialModel must name a file inside the coordinator's data folder ${dataDir}, got ${quoteInput(initialModel)}`);
    }
    return path;
  }
}
