import type { CoordinatorConfig } from '../config/config';
import { ConfigError } from '../config/config';
import { ExperimentSettingsError, aggregationRule, readConsortiumFile, type ExperimentSettings } from './experiment-settings';

/**
 * Returns the configuration of each experiment the coordinator runs: every
 * experiment of the consortium file, only the one named by --experiment, or
 * without a file the single experiment of the flags.
 * @throws ConfigError for an invalid file or an experiment the file does not list.
 */
export async function experimentConfigs(config: CoordinatorConfig): Promise<CoordinatorConfig[]> {
  if (config.experimentsFile === null || config.experimentGiven) return [await applyConsortiumFile(config)];
  let experiments: ExperimentSettings[];
  try {
    experiments = await readConsortiumFile(config.experimentsFile);
  } catch (error) {
    if (error instanceof ExperimentSettingsError || (error as NodeJS.ErrnoException).code === 'ENOENT') throw new ConfigError((error as Error).message);
    throw error;
  }
  return experiments.map((settings) => withSettings(config, settings));
}

/**
 * Returns `config` with the round settings of its experiment from the
 * consortium file, or `config` itself when no file is given.
 * The experiment is the one named by --experiment, or the file's only one.
 * @throws ConfigError for an invalid file or an experiment the file does not list.
 */
export async function applyConsortiumFile(config: CoordinatorConfig): Promise<CoordinatorConfig> {
  if (config.experimentsFile === null) return config;
  let experiments: ExperimentSettings[];
  try {
    experiments = await readConsortiumFile(config.experimentsFile);
  } catch (error) {
    if (error instanceof ExperimentSettingsError || (error as NodeJS.ErrnoException).code === 'ENOENT') throw new ConfigError((error as Error).message);
    throw error;
  }
  const names = experiments.map((e) => e.name);
  let chosen: ExperimentSettings | undefined;
  if (config.experimentGiven) chosen = experiments.find((e) => e.name === config.experiment);
  else if (experiments.length === 1) chosen = experiments[0];
  if (!chosen) {
    const problem = config.experimentGiven ? `experiment ${config.experiment} is not in it` : 'it lists several experiments, so --experiment NAME is required';
    throw new ConfigError(`consortium file ${config.experimentsFile}: ${problem}; it lists ${names.join(', ')}`);
  }
  return withSettings(config, chosen);
}

/** Returns `config` with the round and training settings of one experiment. */
export function withSettings(config: CoordinatorConfig, settings: ExperimentSettings): CoordinatorConfig {
  return {
    ...config,
    experiment: settings.name,
    rounds: settings.rounds,
    minSites: settings.minSites,
    fractionPerRound: settings.fractionPerRound,
    roundTimeoutS: settings.roundDeadlineS,
    epochs: settings.localEpochs,
    batchSize: settings.batchSize,
    learningRate: settings.learningRate,
    strategy: settings.strategy,
    proximalMu: settings.strategy.name === 'fedprox' ? settings.strategy.mu : 0,
    evaluateEvery: settings.evaluateEvery,
    aggregation: aggregationRule(settings),
    maxUpdateNorm: settings.maxUpdateNorm ?? null,
    maxUpdateNormRatio: settings.maxUpdateNormRatio ?? null,
    backbone: settings.backbone ?? null,
    inputSize: settings.inputSize ?? null,
    initialModelFile: settings.initialModel ?? config.initialModelFile,
    initialModelNamed: settings.initialModel !== undefined,
  };
}
