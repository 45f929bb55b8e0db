import { readFile } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { AggregationRule } from '../aggregation/aggregator';

const positiveInt = z.number().int().positive();

/**
 * Aggregation strategy of an experiment. FedAvg and FedProx aggregate alike
 * (FedProx adds a proximal term to the sites' local loss, weighted by `mu`);
 * FedAdam applies the averaged update as a pseudo-gradient with Adam on the
 * coordinator (Reddi et al., "Adaptive Federated Optimization", ICLR 2021).
 */
export const strategySchema = z.discriminatedUnion('name', [
  z.object({ name: z.literal('fedavg') }).strict(),
  z.object({ name: z.literal('fedprox'), mu: z.number().positive().max(100) }).strict(),
  z
    .object({
      name: z.literal('fedadam'),
      serverLearningRate: z.number().positive().max(10),
      beta1: z.number().min(0).max(1).default(0.9),
      beta2: z.number().min(0).max(1).default(0.99),
      /** Adaptivity constant added to the square root of the second moment. */
      tau: z.number().positive().default(0.001),
    })
    .strict(),
]);
export type Strategy = z.infer<typeof strategySchema>;

/** Settings of one experiment, as written in a consortium file or sent to POST /api/experiments. */
export const experimentSettingsSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected 1-64 letters, digits, dot, dash or underscore'),
    rounds: positiveInt.max(10_000).default(3),
    /** Sites needed to start a round and to close it at the deadline. */
    minSites: positiveInt.default(2),
    /** Share of the ready sites asked to train in each round, at least minSites of them. */
    fractionPerRound: z.number().gt(0).max(1).default(1),
    /** Seconds each training and each evaluation phase may take. */
    roundDeadlineS: z.number().positive().default(600),
    localEpochs: positiveInt.max(1000).default(1),
    batchSize: positiveInt.max(4096).default(4),
    learningRate: z.number().positive().max(10).default(0.001),
    strategy: strategySchema.default({ name: 'fedavg' }),
    /** Evaluate the new global model every k rounds; the last round is always evaluated. */
    evaluateEvery: positiveInt.max(10_000).default(1),
    /** Backbone and input size the initial model must have; the coordinator rejects a start with another model. */
    backbone: z.enum(['small', 'resnet18', 'resnet50']).optional(),
    inputSize: positiveInt.max(1024).optional(),
    /** Weight file (CVNW) used as this experiment's version 0; without it, the --initial-model file. */
    initialModel: z.string().min(1).max(4096).optional(),
    /** Rule that combines a round's updates into the next model; absent means fedavg. */
    aggregation: z.enum(['fedavg', 'median', 'trimmed-mean']).optional(),
    /** Share of the values cut at each end of every coordinate by trimmed-mean; absent means 0.2. */
    trimFraction: z.number().min(0).lt(0.5).optional(),
    /** Largest L2 distance of an update from the global model, in the units of the weights. */
    maxUpdateNorm: z.number().positive().optional(),
    /** Largest L2 distance of an update from the global model as a multiple of the previous round's median distance. */
    maxUpdateNormRatio: z.number().gt(1).optional(),
  })
  .strict()
  .superRefine((settings, context) => {
    if (settings.trimFraction !== undefined && settings.aggregation !== 'trimmed-mean') {
      context.addIssue({ code: z.ZodIssueCode.custom, path: ['trimFraction'], message: 'applies only to aggregation trimmed-mean' });
    }
  });
export type ExperimentSettings = z.infer<typeof experimentSettingsSchema>;

/** Trim fraction of trimmed-mean when the settings give none: 20 % cut at each end, the default `beta` of Flower's FedTrimmedAvg. */
export const DEFAULT_TRIM_FRACTION = 0.2;

/** Returns the aggregation rule the settings choose. */
export function aggregationRule(settings: Pick<ExperimentSettings, 'aggregation' | 'trimFraction'>): AggregationRule {
  switch (settings.aggregation ?? 'fedavg') {
    case 'fedavg':
      return { name: 'fedavg' };
    case 'median':
      return { name: 'median' };
    case 'trimmed-mean':
      return { name: 'trimmed-mean', trimFraction: settings.trimFraction ?? DEFAULT_TRIM_FRACTION };
  }
}

/** Thrown for an invalid consortium file or experiment body; the message names the field. */
export class ExperimentSettingsError extends Error {
  override name = 'ExperimentSettingsError';
}

/**
 * Validates experiment settings and fills in the defaults.
 * @param source names the file or request in the error message.
 * @throws ExperimentSettingsError naming the first invalid field.
 */
export function parseExperimentSettings(value: unknown, source: string): ExperimentSettings {
  const parsed = experimentSettingsSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue.path.join('.') || '(root)';
    throw new ExperimentSettingsError(`${source}: field ${field}: ${issue.message}`);
  }
  return parsed.data;
}

const consortiumFileSchema = z.object({ experiments: z.array(z.unknown()).min(1, 'lists no experiment') }).strict();

/**
 * Reads a consortium file: `{"experiments": [settings, ...]}` as JSON (.json)
 * or YAML (.yaml, .yml).
 * @throws ExperimentSettingsError naming the file, the experiment and the field,
 * or a repeated experiment name.
 */
export async function readConsortiumFile(path: string): Promise<ExperimentSettings[]> {
  const text = await readFile(path, 'utf8');
  let document: unknown;
  try {
    document = ['.yaml', '.yml'].includes(extname(path).toLowerCase()) ? parseYaml(text) : JSON.parse(text);
  } catch (error) {
    throw new ExperimentSettingsError(`consortium file ${path} could not be parsed: ${(error as Error).message}`);
  }
  const file = consortiumFileSchema.safeParse(document);
  if (!file.success) {
    const issue = file.error.issues[0];
    throw new ExperimentSettingsError(`consortium file ${path}: field ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const names = new Set<string>();
  return file.data.experiments.map((entry, index) => {
    const settings = parseExperimentSettings(entry, `consortium file ${path}, experiments.${index}`);
    // A relative initialModel is read from the consortium file's folder, not from the working directory.
    if (settings.initialModel !== undefined) settings.initialModel = resolve(dirname(path), settings.initialModel);
    if (names.has(settings.name)) throw new ExperimentSettingsError(`consortium file ${path}: experiment ${settings.name} is listed twice`);
    names.add(settings.name);
    return settings;
  });
}
