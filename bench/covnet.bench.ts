import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createCovnet, initBackend, type LabelledExam } from '@covnet/model';

const ANCHORS = join(process.env.COVNET_SHARED_DATA ?? join(__dirname, '..', '..', 'shared', 'data'), '..', 'anchors');

const INPUT_SIZE = 224;
const INFER_SLICES = 64;
const INFER_RUNS = 2;
// Each exam in a training step has TRAIN_SLICES_PER_EXAM slices, and each thread gets
// TRAIN_EXAMS_PER_THREAD exams. With two threads a step has 16 slices, as the PyTorch
// anchor's step has. The 8 slices per wasm heap take about 3.1 GB of its 4 GB.
const TRAIN_SLICES_PER_EXAM = 4;
const TRAIN_EXAMS_PER_THREAD = 2;
const TRAIN_STEPS = 3;
const ANCHOR_RUNS = 3;

/** Grey slices with a smooth gradient and a bright disc, so activations are not all zero. */
function syntheticExam(slices: number, seed: number): LabelledExam['input'] {
  const data = new Float32Array(slices * INPUT_SIZE * INPUT_SIZE);
  for (let s = 0; s < slices; s++) {
    for (let y = 0; y < INPUT_SIZE; y++) {
      for (let x = 0; x < INPUT_SIZE; x++) {
        const disc = (x - 112) ** 2 + (y - 100 - s) ** 2 < 900 ? 0.4 : 0;
        data[(s * INPUT_SIZE + y) * INPUT_SIZE + x] = 0.2 + (0.3 * (x + seed)) / INPUT_SIZE + disc;
      }
    }
  }
  return { slices, size: INPUT_SIZE, data };
}

function progress(message: string): void {
  process.stderr.write(`covnet: ${message}\n`);
}

/** One measured run: wall-clock seconds and CPU seconds of the whole process (all threads). */
interface Run {
  wallSeconds: number;
  cpuSeconds: number;
}

async function measure(action: () => Promise<unknown>): Promise<Run> {
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await action();
  const cpu = process.cpuUsage(cpuBefore);
  return { wallSeconds: (performance.now() - started) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/** Measures predict on one 64-slice exam: the fastest of INFER_RUNS runs after a warm-up. */
async function inferRuns(workers: number): Promise<{ seconds: number; cpuSeconds: number }> {
  const model = createCovnet({ backbone: 'resnet50', inputSize: INPUT_SIZE, seed: 1, workers });
  try {
    const exam = syntheticExam(INFER_SLICES, 0);
    await model.predict(exam);
    const runs: Run[] = [];
    for (let run = 0; run < INFER_RUNS; run++) {
      runs.push(await measure(() => model.predict(exam)));
      progress(`${workers} thread(s): predict ${INFER_SLICES} slices in ${runs[run].wallSeconds.toFixed(2)} s (${runs[run].cpuSeconds.toFixed(2)} s of CPU)`);
    }
    return { seconds: Math.min(...runs.map((r) => r.wallSeconds)), cpuSeconds: Math.min(...runs.map((r) => r.cpuSeconds)) };
  } finally {
    model.dispose();
  }
}

/**
 * Measures training slices per second and CPU seconds per slice: the best of TRAIN_STEPS
 * Adam steps of one training run, after its first step. As in a round of local training,
 * the steps share one optimizer, whose moments the first step allocates; PyTorch's anchor
 * likewise times a step after the one that creates Adam's state.
 */
async function trainRuns(workers: number): Promise<{ slicesPerSecond: number; cpuSecondsPerSlice: number }> {
  const model = createCovnet({ backbone: 'resnet50', inputSize: INPUT_SIZE, seed: 1, workers });
  try {
    const examsPerStep = TRAIN_EXAMS_PER_THREAD * workers;
    const slicesPerStep = examsPerStep * TRAIN_SLICES_PER_EXAM;
    const exams: LabelledExam[] = Array.from({ length: examsPerStep }, (_, i) => ({
      input: syntheticExam(TRAIN_SLICES_PER_EXAM, i + 1),
      label: (i % 3) as 0 | 1 | 2,
    }));
    const runs: Run[] = [];
    let wallBefore = performance.now();
    let cpuBefore = process.cpuUsage();
    const onStep = (step: number) => {
      const cpu = process.cpuUsage(cpuBefore);
      const run = { wallSeconds: (performance.now() - wallBefore) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
      if (step > 1) {
        runs.push(run);
        progress(`${workers} thread(s): training step at ${(slicesPerStep / run.wallSeconds).toFixed(2)} slices/s (${(run.cpuSeconds / slicesPerStep).toFixed(2)} s of CPU per slice)`);
      }
      wallBefore = performance.now();
      cpuBefore = process.cpuUsage();
    };
    // Each epoch is one step over the same exams. BN recalibration is a forward pass at the
    // end of a round, not part of a step.
    const hyper = { epochs: TRAIN_STEPS + 1, learningRate: 1e-4, batchSize: examsPerStep, recalibrateBatchNorm: false, onStep };
    await model.trainLocal(exams, hyper);
    return {
      slicesPerSecond: slicesPerStep / Math.min(...runs.map((r) => r.wallSeconds)),
      cpuSecondsPerSlice: Math.min(...runs.map((r) => r.cpuSeconds)) / slicesPerStep,
    };
  } finally {
    model.dispose();
  }
}

interface TorchAnchor {
  inferSeconds: number;
  trainSlicesPerSecond: number;
  version: string;
}

/**
 * Runs the PyTorch anchor (torch_covnet.py beside the shared data, with the system Python
 * and two threads) ANCHOR_RUNS times and returns its best seconds for one 64-slice exam
 * and its best training slices per second on a 16-slice exam. The script times a single
 * step per run, and other jobs on a shared machine slowed single runs by up to half, so
 * its best run is set against this side's best step. Returns undefined, with a message,
 * when the script or torch is missing.
 */
function measureTorch(): TorchAnchor | undefined {
  const runs: TorchAnchor[] = [];
  for (let run = 0; run < ANCHOR_RUNS; run++) {
    const child = spawnSync('/usr/bin/python3', [join(ANCHORS, 'torch_covnet.py'), String(INFER_SLICES)], { encoding: 'utf8', timeout: 1_800_000 });
    const out = child.stdout ?? '';
    const infer = /^torch (\S+) .*inference exam \d+x\d+x\d+: ([\d.]+)s/m.exec(out);
    const train = /^train step exam .*\(([\d.]+) slices\/s\)/m.exec(out);
    if (child.status !== 0 || infer === null || train === null) {
      const why = child.error?.message ?? (child.stderr ?? '').trim().split('\n').pop() ?? `exit status ${child.status}`;
      process.stderr.write(`covnet.resnet50.torch_anchor skipped: ${why}\n`);
      return undefined;
    }
    progress(`PyTorch anchor, run ${run + 1}: ${out.trim().replace(/\n/g, '; ')}`);
    runs.push({ version: infer[1], inferSeconds: Number(infer[2]), trainSlicesPerSecond: Number(train[1]) });
  }
  return {
    version: runs[0].version,
    inferSeconds: Math.min(...runs.map((r) => r.inferSeconds)),
    trainSlicesPerSecond: Math.max(...runs.map((r) => r.trainSlicesPerSecond)),
  };
}

/**
 * COVNet-ResNet-50 at 224 pixels on the backend that initBackend chooses: seconds per
 * 64-slice exam and training slices per second, with one wasm worker thread per core and,
 * for comparison, in the main thread alone. Each figure is the best of a few runs, because
 * on a shared machine other jobs only ever slow a run down. The CPU figures count the
 * seconds that all threads of this process ran. Other jobs change them less than the
 * wall-clock figures, though still through shared caches and memory bandwidth, so they
 * suit comparing runs taken at different loads.
 */
export async function benchCovnet() {
  const choice = await initBackend();
  progress(choice.reason);
  // Worker threads are how wasm uses several cores; a native backend has its own threads.
  const workers = choice.rung === 'wasm' ? Math.max(1, cpus().length) : 1;
  let convolutions = '';
  if (choice.convolutions?.kind === 'native-avx2') {
    convolutions = `, native kernels with ${choice.convolutions.instructions === 'avx512' ? 'AVX-512' : 'AVX2'}`;
  } else if (choice.rung === 'wasm') {
    convolutions = ", wasm's XNNPACK convolutions";
  }
  const note = `backend ${choice.rung}${convolutions}, ${workers} worker thread(s)`;
  // The anchor runs first and alone, so both sides see the same machine and load.
  const torch = measureTorch();
  const infer = await inferRuns(workers);
  const train = await trainRuns(workers);
  const inferVersus = torch === undefined ? '' : `; ${(torch.inferSeconds / infer.seconds).toFixed(2)} times as fast as PyTorch in this run`;
  const trainVersus = torch === undefined ? '' : `; ${(train.slicesPerSecond / torch.trainSlicesPerSecond).toFixed(2)} times PyTorch's rate in this run`;
  const figures = [
    { name: 'covnet.resnet50.infer_s_per_exam64', value: infer.seconds, unit: 's', note: note + inferVersus },
    { name: 'covnet.resnet50.train_slices_per_s', value: train.slicesPerSecond, unit: 'slices/s', note: note + trainVersus },
    { name: 'covnet.resnet50.infer_cpu_s_per_exam64', value: infer.cpuSeconds, unit: 's', note },
    { name: 'covnet.resnet50.train_cpu_s_per_slice', value: train.cpuSecondsPerSlice, unit: 's', note },
  ];
  if (torch !== undefined) {
    const anchorNote = `PyTorch ${torch.version} on CPU, 2 threads, best of ${ANCHOR_RUNS} runs just before`;
    figures.push(
      { name: 'covnet.resnet50.torch_anchor.infer_s_per_exam64', value: torch.inferSeconds, unit: 's', note: anchorNote },
      { name: 'covnet.resnet50.torch_anchor.train_slices_per_s', value: torch.trainSlicesPerSecond, unit: 'slices/s', note: `${anchorNote}, one 16-slice exam per step` },
    );
  }
  if (workers > 1) {
    const single = `backend ${choice.rung}, main thread only`;
    const singleInfer = await inferRuns(1);
    const singleTrain = await trainRuns(1);
    figures.push(
      { name: 'covnet.resnet50.infer_s_per_exam64_1thread', value: singleInfer.seconds, unit: 's', note: single },
      { name: 'covnet.resnet50.train_slices_per_s_1thread', value: singleTrain.slicesPerSecond, unit: 'slices/s', note: single },
    );
  }
  return figures;
}
