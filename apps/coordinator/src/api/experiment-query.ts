import { NotFoundException } from '@nestjs/common';
import { ApiQuery } from '@nestjs/swagger';
import { parseNameParam } from './name-param';
import { UnknownExperimentError, type ExperimentRuntime, type ExperimentRuntimes } from '../experiments/experiment-runtimes';

/** Swagger description of the `?experiment=NAME` query parameter of the read routes. */
export const ApiExperimentQuery = () =>
  ApiQuery({ name: 'experiment', required: false, type: String, description: 'experiment name; default: the first experiment this coordinator runs' });

/**
 * Returns the experiment named by `?experiment=`, or the first one when the query omits it.
 * @throws BadRequestException for a repeated or malformed name.
 * @throws NotFoundException for an experiment this coordinator does not run.
 */
export function experimentOfQuery(runtimes: ExperimentRuntimes, name: unknown): ExperimentRuntime {
  // Express parses `?experiment=a&experiment=b` into an array, which is rejected with the malformed names.
  const valid = name === undefined || name === '' ? undefined : parseNameParam('query parameter experiment', name);
  try {
    return runtimes.get(valid);
  } catch (error) {
    if (error instanceof UnknownExperimentError) throw new NotFoundException(error.message);
    throw error;
  }
}
