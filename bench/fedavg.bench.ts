import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { FedAvgAccumulator, type ModelLayout } from '../apps/coordinator/src/aggregation/fedavg';
import type { NamedTensor } from '@covnet/protocol';

// Parameter count of COVNet with a ResNet-50 backbone and a 3-class head,
// as the PyTorch reference model counts it.
const RESNET50_PARAMETERS = 23_514_179;
const SITES = 6;
const TENSORS = 320;
const RUNS = 5;
const NUMPY_ANCHOR = join(__dirname, '..', '..', 'shared', 'anchors', 'numpy_fedavg.py');

/** Returns a layout of 320 tensors with the parameter count of COVNet-ResNet-50. */
export function resnet50Layout(): ModelLayout {
  const base = Math.floor(RESNET50_PARAMETERS / TENSORS);
  return Array.from({ length: TENSORS }, (_, i) => ({
    name: `layer${i}/kernel`,
    shape: [i === TENSORS - 1 ? RESNET50_PARAMETERS - base * (TENSORS - 1) : base],
  }));
}

/** Returns tensors of `layout` filled with pseudo-random values in [-0.5, 0.5). */
export function syntheticUpdate(layout: ModelLayout, seed: number): NamedTensor[] {
  let x = seed;
  return layout.map((entry) => {
    const data = new Float32Array(entry.shape[0]);
    for (let i = 0; i < data.length; i++) {
      x = (x * 1664525 + 1013904223) >>> 0;
      data[i] = x / 4294967296 - 0.5;
    }
    return { name: entry.name, shape: entry.shape, data };
  });
}

/** Returns the seconds of one FedAvg of `updates` into `accumulator`, result included. */
function foldSeconds(accumulator: FedAvgAccumulator, updates: NamedTensor[][]): number {
  const started = process.hrtime.bigint();
  accumulator.reset();
  updates.forEach((u, s) => accumulator.add(u, 100 + 37 * s));
  accumulator.result();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Runs the numpy anchor and returns its GB/s, or null when python3 with numpy or the script is missing. */
function numpyGigabytesPerSecond(): number | null {
  if (!existsSync(NUMPY_ANCHOR)) return null;
  const run = spawnSync('python3', [NUMPY_ANCHOR], { encoding: 'utf8', timeout: 300_000 });
  const match = /= ([\d.]+) GB\/s/.exec(run.stdout ?? '');
  if (run.status !== 0 || !match) {
    process.stderr.write(`fedavg: numpy anchor failed: ${run.error?.message ?? run.stderr}\n`);
    return null;
  }
  return Number(match[1]);
}

interface FoldMeasurement {
  seconds: number;
  freshSeconds: number;
  peakRssMb: number;
}

/** Folds six updates RUNS times with a reused and with a fresh accumulator; returns the median seconds of each. */
function measureFolds(): FoldMeasurement {
  const layout = resnet50Layout();
  const updates = Array.from({ length: SITES }, (_, s) => syntheticUpdate(layout, s + 1));
  const reused = new FedAvgAccumulator(layout);
  foldSeconds(reused, updates);
  const reusedTimes: number[] = [];
  const freshTimes: number[] = [];
  // Alternating the two kinds of run spreads the load of other processes over both.
  for (let run = 0; run < RUNS; run++) {
    reusedTimes.push(foldSeconds(reused, updates));
    freshTimes.push(foldSeconds(new FedAvgAccumulator(layout), updates));
  }
  return { seconds: median(reusedTimes), freshSeconds: median(freshTimes), peakRssMb: process.resourceUsage().maxRSS / 1024 };
}

// Runs measureFolds in a fresh Node process that loads only the aggregation code, as the numpy
// anchor runs alone in its process. The bench's own process also loads TensorFlow.js for other
// suites, whose larger heap slows garbage collection of the 94 MB results.
function measureInChildProcess(): FoldMeasurement {
  const run = spawnSync(process.execPath, ['--import', 'tsx', __filename], { encoding: 'utf8', timeout: 600_000, maxBuffer: 1 << 20 });
  if (run.status !== 0) throw new Error(`FedAvg measurement failed: ${run.error?.message ?? run.stderr}`);
  return JSON.parse(run.stdout) as FoldMeasurement;
}

/**
 * FedAvg of six ResNet-50-sized updates folded into the coordinator's running
 * sum: gigabytes of float32 updates per second, median of 5 runs after a
 * warm-up, and peak RSS, measured in a child process. The accumulator is
 * reused across runs, as the round scheduler reuses it across rounds. The note
 * reports a fresh accumulator per run, as in a coordinator's first round.
 */
export async function benchFedAvg() {
  const gigabytes = (SITES * RESNET50_PARAMETERS * 4) / 1e9;
  const { seconds, freshSeconds, peakRssMb } = measureInChildProcess();
  const numpy = numpyGigabytesPerSecond();
  const versus = numpy === null ? 'numpy anchor not run' : `${(gigabytes / seconds / numpy).toFixed(2)} times numpy's ${numpy.toFixed(2)} GB/s measured just after`;
  return [
    {
      name: 'fedavg.resnet50x6.gb_per_s',
      value: gigabytes / seconds,
      unit: 'GB/s',
      note: `median ${(seconds * 1000).toFixed(0)} ms, ${versus}; fresh accumulator ${(gigabytes / freshSeconds).toFixed(2)} GB/s; os.cpus().length ${cpus().length}`,
    },
    { name: 'fedavg.resnet50x6.peak_rss_mb', value: peakRssMb, unit: 'MB', note: 'of the measuring child process, including the six updates it holds as input' },
  ];
}

// Child-process entry: prints the FoldMeasurement as JSON.
if (require.main === module) {
  process.stdout.write(`${JSON.stringify(measureFolds())}\n`);
}
