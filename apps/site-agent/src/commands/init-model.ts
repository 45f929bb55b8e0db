import { resolve } from 'node:path';
import { encodeWeights, sha256Hex } from '@covnet/protocol';
import { createCovnet } from '@covnet/model';
import { parseCommand, positiveInteger, UsageError } from './args';
import { writeFileAtomic } from './model-file';
import { chooseAndLogBackend } from './backend-choice';

const BACKBONES = ['small', 'resnet18', 'resnet50'] as const;

/**
 * `init-model --out FILE [--backbone small|resnet18|resnet50] [--input-size N] [--max-slices N] [--seed S]`:
 * writes the initial global model (version 0) that a coordinator starts from.
 */
export async function initModelCommand(args: string[]): Promise<number> {
  const { values } = parseCommand(args, {
    out: { type: 'string' },
    backbone: { type: 'string', default: 'small' },
    'input-size': { type: 'string', default: '64' },
    'max-slices': { type: 'string', default: '16' },
    seed: { type: 'string', default: '1' },
  });
  if (!values.out) throw new UsageError('--out FILE is required');
  const backbone = values.backbone as (typeof BACKBONES)[number];
  if (!BACKBONES.includes(backbone)) throw new UsageError(`--backbone must be one of ${BACKBONES.join(', ')}, got "${values.backbone}"`);
  const inputSize = positiveInteger(values['input-size'], 'input-size');
  const maxSlices = positiveInteger(values['max-slices'], 'max-slices');
  const seed = positiveInteger(values.seed, 'seed');

  const backendChoice = await chooseAndLogBackend();
  const covnet = createCovnet({ backbone, inputSize, seed });
  try {
    const payload = encodeWeights(covnet.getNamedWeights(), 'float32', { backbone, inputSize, maxSlices, seed });
    await writeFileAtomic(resolve(values.out), payload);
    process.stdout.write(`wrote ${backbone} COVNet (${payload.length} bytes, sha256 ${sha256Hex(payload)}) to ${resolve(values.out)}\n`);
  } finally {
    covnet.dispose();
  }
  return 0;
}
