import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { FedAvgAccumulator, type ModelLayout } from '../apps/coordinator/src/aggregation/fedavg';
import { describeFoldKernel } from '../apps/coordinator/src/aggregation/native-fold';
import { StoredUpdate } from '../apps/coordinator/src/aggregation/stored-update';
import { decodeWeights, encodeWeights, type NamedTensor } from '@covnet/protocol';

// Parameter count of COVNet with a ResNet-50 backbone and a 3-class head,
// as the PyTorch reference model counts it.
const RESNET50_PARAMETERS = 23_514_179;
const SITES = 6;
const TENSORS = 320;
const RUNS = 5;
const NUMPY_ANCHOR = join(__dirname, '..', '..', 'shared', 'anchors', 'numpy_fedavg.py');
// The anchor's first line names Debian's Python and numpy; a python3 earlier
// on PATH (pyenv, a virtualenv) may carry another numpy version.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

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

/** Returns the seconds that `average` takes. */
function seconds(average: () => void): number {
  const started = process.hrtime.bigint();
  average();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Runs the numpy anchor and returns its GB/s, or null when python3 with numpy or the script is missing. */
function numpyGigabytesPerSecond(): number | null {
  if (!existsSync(NUMPY_ANCHOR)) return null;
  const run = spawnSync(PYTHON, [NUMPY_ANCHOR], { encoding: 'utf8', timeout: 300_000 });
  const match = /= ([\d.]+) GB\/s/.exec(run.stdout ?? '');
  if (run.status !== 0 || !match) {
    process.stderr.write(`fedavg: numpy anchor failed: ${run.error?.message ?? run.stderr}\n`);
    return null;
  }
  return Number(match[1]);
}

interface FoldMeasurement {
  /** Median seconds of the six stored updates folded and divided out in one batched pass, the accumulator reused. */
  batched: number;
  /** The same six folded one pass each, as when updates arrive apart. */
  oneAtATime: number;
  /** The batched pass with a fresh accumulator per run, as in a coordinator's first round. */
  batchedFresh: number;
  /** Six `add` calls with the decoded tensors in memory, as `fedAvg` does. */
  inMemory: number;
  peakRssMb: number;
  /** Kernel that folded, as the coordinator logs it at startup. */
  kernel: string;
}

/**
 * Writes six updates as weight files and folds them RUNS times each way;
 * returns the median seconds of each. The files are read back tile by tile
 * as the coordinator reads its stored updates. They were just written, so
 * they come from the page cache, as an update accepted moments ago does.
 */
function measureFolds(): FoldMeasurement {
  const layout = resnet50Layout();
  const updates = Array.from({ length: SITES }, (_, s) => syntheticUpdate(layout, s + 1));
  const weights = updates.map((_, s) => 100 + 37 * s);
  const directory = mkdtempSync(join(tmpdir(), 'covnet-fedavg-bench-'));
  try {
    const stored = updates.map((update, s) => {
      const path = join(directory, `site-${s}.cvnw`);
      writeFileSync(path, encodeWeights(update));
      return new StoredUpdate(path, weights[s], layout, decodeWeights(readFileSync(path)));
    });
    const reused = new FedAvgAccumulator(layout);
    // What the round scheduler does at round close with six updates waiting.
    const batched = () => {
      reused.reset();
      reused.resultAfter(stored);
    };
    // What it does when each update was folded on its own as it arrived.
    const oneAtATime = () => {
      reused.reset();
      for (const update of stored) reused.addBatch([update]);
      reused.result();
    };
    const inMemory = () => {
      reused.reset();
      updates.forEach((update, s) => reused.add(update, weights[s]));
      reused.result();
    };
    for (const average of [batched, oneAtATime, inMemory]) seconds(average);

    const times: Record<'batched' | 'oneAtATime' | 'batchedFresh' | 'inMemory', number[]> = { batched: [], oneAtATime: [], batchedFresh: [], inMemory: [] };
    // Interleaving the kinds of run spreads the load of other processes over all of them.
    for (let run = 0; run < RUNS; run++) {
      times.batched.push(seconds(batched));
      times.oneAtATime.push(seconds(oneAtATime));
      const fresh = new FedAvgAccumulator(layout);
      times.batchedFresh.push(seconds(() => fresh.resultAfter(stored)));
      times.inMemory.push(seconds(inMemory));
    }
    return {
      batched: median(times.batched),
      oneAtATime: median(times.oneAtATime),
      batchedFresh: median(times.batchedFresh),
      inMemory: median(times.inMemory),
      peakRssMb: process.resourceUsage().maxRSS / 1024,
      kernel: describeFoldKernel(),
    };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
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
 * FedAvg of six ResNet-50-sized updates stored as weight files, folded into
 * the coordinator's running sum and divided out: gigabytes of float32
 * updates per second, median of 5 runs after a warm-up, and peak RSS,
 * measured in a child process. The main figure folds the six in one batched
 * pass, as the coordinator does with updates that wait at the same time. A
 * second figure folds them one pass each, as updates that arrive apart are. The accumulator
 * is reused across runs, as the round scheduler reuses it across rounds.
 */
export async function benchFedAvg() {
  const gigabytes = (SITES * RESNET50_PARAMETERS * 4) / 1e9;
  const measured = measureInChildProcess();
  const numpy = numpyGigabytesPerSecond();
  const versus = (seconds: number) =>
    numpy === null ? 'numpy anchor not run' : `${(gigabytes / seconds / numpy).toFixed(2)} times numpy's ${numpy.toFixed(2)} GB/s measured just after`;
  return [
    {
      name: 'fedavg.resnet50x6.gb_per_s',
      value: gigabytes / measured.batched,
      unit: 'GB/s',
      note: `six waiting updates in one batched pass, median ${(measured.batched * 1000).toFixed(0)} ms, ${versus(measured.batched)}; fresh accumulator ${(gigabytes / measured.batchedFresh).toFixed(2)} GB/s; os.cpus().length ${cpus().length}; ${measured.kernel}`,
    },
    {
      name: 'fedavg.resnet50x6.one_at_a_time_gb_per_s',
      value: gigabytes / measured.oneAtATime,
      unit: 'GB/s',
      note: `the six updates folded one pass each, median ${(measured.oneAtATime * 1000).toFixed(0)} ms, ${versus(measured.oneAtATime)}; six add() calls from memory ${(gigabytes / measured.inMemory).toFixed(2)} GB/s`,
    },
    { name: 'fedavg.resnet50x6.peak_rss_mb', value: measured.peakRssMb, unit: 'MB', note: 'of the measuring child process, including the six updates it holds as input' },
  ];
}

// Child-process entry: prints the FoldMeasurement as JSON.
if (require.main === module) {
  process.stdout.write(`${JSON.stringify(measureFolds())}\n`);
}
