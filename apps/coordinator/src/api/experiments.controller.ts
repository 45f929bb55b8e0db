import { Body, ConflictException, Controller, Get, HttpCode, Inject, NotFoundException, Param, Post, BadRequestException } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { ExperimentSettingsError, parseExperimentSettings } from '../experiments/experiment-settings';
import { ExperimentActionError } from '../experiments/experiment.service';
import { ExperimentRuntimes } from '../experiments/experiment-runtimes';
import type { ExperimentAction } from '../experiments/experiment-state';
import { parseNameParam, quoteInput } from './name-param';

const ACTIONS: readonly ExperimentAction[] = ['start', 'pause', 'stop'];

@ApiTags('experiments')
@ApiBearerAuth()
@Controller('experiments')
export class ExperimentsController {
  constructor(@Inject(ExperimentRuntimes) private readonly experiments: ExperimentRuntimes) {}

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
      throw error;
    }
  }
}
