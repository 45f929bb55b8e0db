import { resolve } from 'node:path';
import { CLASS_NAMES } from '@covnet/protocol';
import { initBackend } from '@covnet/model';
import { loadExamInput } from '../archive/site-archive';
import { parseCommand, UsageError } from './args';
import { loadCheckpoint } from './model-file';
import { log } from '../log';

/** `infer EXAM_DIR --model CHECKPOINT [--json]`: runs COVNet on one exam, on this machine. */
export async function inferCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    model: { type: 'string' },
    json: { type: 'boolean', default: false },
  });
  if (positionals.length !== 1) throw new UsageError('infer takes one exam folder: infer EXAM_DIR --model CHECKPOINT');
  if (!values.model) throw new UsageError('--model CHECKPOINT is required');

  const backendChoice = await initBackend();
  log.info(backendChoice, 'backend chosen');
  const { covnet, spec, sha256 } = await loadCheckpoint(resolve(values.model));
  try {
    const started = Date.now();
    const input = await loadExamInput(resolve(positionals[0]), spec);
    const probabilities = await covnet.predict(input);
    const result = {
      exam: resolve(positionals[0]),
      slices: input.slices,
      model: { sha256, backbone: spec.backbone, inputSize: spec.inputSize },
      backend: backendChoice.backend,
      probabilities: Object.fromEntries(CLASS_NAMES.map((name, k) => [name, probabilities[k]])),
      seconds: (Date.now() - started) / 1000,
    };
    if (values.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    } else {
      for (const name of CLASS_NAMES) process.stdout.write(`${name.padEnd(14)} ${result.probabilities[name].toFixed(4)}\n`);
    }
  } finally {
    covnet.dispose();
  }
  return 0;
}
