import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { CLASS_NAMES } from '@covnet/protocol';
import { loadExamInput } from '../archive/site-archive';
import { parseCommand, positiveInteger, UsageError } from './args';
import { mostSuspiciousSlices, renderOverlayPng } from './heatmap-overlay';
import { loadCheckpoint } from './model-file';
import { chooseAndLogBackend } from './backend-choice';

const USAGE = 'infer EXAM_DIR --model CHECKPOINT [--out DIR] [--slices N] [--class NAME] [--json]';

/**
 * `infer EXAM_DIR --model CHECKPOINT`: runs COVNet on one exam, on this machine. Prints the
 * three class probabilities and writes, into --out (default `infer-<exam folder name>`),
 * Grad-CAM overlays of the --slices (default 3) most suspicious slices as PNG and
 * `report.json`. The map explains --class, by default the predicted class.
 */
export async function inferCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    model: { type: 'string' },
    out: { type: 'string' },
    slices: { type: 'string' },
    class: { type: 'string' },
    json: { type: 'boolean', default: false },
  });
  if (positionals.length !== 1) throw new UsageError(`infer takes one exam folder: ${USAGE}`);
  if (!values.model) throw new UsageError(`--model CHECKPOINT is required: ${USAGE}`);
  const slicesToShow = positiveInteger(values.slices, 'slices', 3);
  let classIndex: number | undefined;
  if (values.class !== undefined) {
    classIndex = CLASS_NAMES.indexOf(values.class as (typeof CLASS_NAMES)[number]);
    if (classIndex < 0) throw new UsageError(`--class must be one of ${CLASS_NAMES.join(', ')}, got "${values.class}"`);
  }
  const examDir = resolve(positionals[0]);
  const outDir = resolve(values.out ?? `infer-${basename(examDir)}`);

  const backendChoice = await chooseAndLogBackend();
  const { covnet, spec, sha256 } = await loadCheckpoint(resolve(values.model));
  try {
    const started = Date.now();
    const input = await loadExamInput(examDir, spec);
    const probabilities = await covnet.predict(input);
    const cam = await covnet.explain(input, classIndex);
    const suspicious = mostSuspiciousSlices(cam, slicesToShow);

    await mkdir(outDir, { recursive: true });
    const pixels = input.size * input.size;
    const heatmaps = [];
    for (const [rank, { slice, peakHeat }] of suspicious.entries()) {
      const file = `slice-${String(rank + 1).padStart(2, '0')}-input${slice}.png`;
      const grey = input.data.subarray(slice * pixels, (slice + 1) * pixels);
      const heat = cam.heatmap.subarray(slice * pixels, (slice + 1) * pixels);
      await writeFile(join(outDir, file), renderOverlayPng(grey, heat, input.size));
      // sliceIndices maps a model-input slice back to the series' slice when the exam was
      // subsampled; exams of one image have none.
      heatmaps.push({ rank: rank + 1, inputSlice: slice, sourceSlice: input.sliceIndices?.[slice] ?? slice, peakHeat, file });
    }

    const result = {
      exam: examDir,
      slices: input.slices,
      model: { sha256, backbone: spec.backbone, inputSize: spec.inputSize },
      backend: backendChoice.backend,
      probabilities: Object.fromEntries(CLASS_NAMES.map((name, k) => [name, probabilities[k]])),
      gradCam: { class: CLASS_NAMES[cam.classIndex], featureSize: cam.featureSize, heatmaps },
      report: join(outDir, 'report.json'),
      seconds: (Date.now() - started) / 1000,
    };
    await writeFile(result.report, `${JSON.stringify(result, null, 2)}\n`);

    if (values.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    } else {
      for (const name of CLASS_NAMES) process.stdout.write(`${name.padEnd(14)} ${result.probabilities[name].toFixed(4)}\n`);
      process.stdout.write(`Grad-CAM of ${result.gradCam.class} for ${heatmaps.length} slice(s) and report.json in ${outDir}\n`);
    }
  } finally {
    covnet.dispose();
  }
  return 0;
}
