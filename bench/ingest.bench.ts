import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DecodePool, loadSeriesVolume } from '@covnet/imaging';

// The 64-slice, 512x512 implicit VR series of Lung-PET-CT-Dx patient A0001, read in place.
const DATA = process.env.COVNET_SHARED_DATA ?? join(__dirname, '..', '..', 'shared', 'data');
const SERIES = join(
  DATA,
  'lung-pet-ct-dx/Lung-PET-CT-Dx/manifest-1675442780019/Lung-PET-CT-Dx/Lung_Dx-A0001/04-04-2007-NA-Chest-07990/2.000000-5mm-40805',
);
const RUNS = 5;

// With a pool, the files are decoded on one worker thread per core. The pool starts before
// the warm-up, so its start-up is not timed.
async function slicesPerSecond(files: string[], pool?: DecodePool): Promise<number> {
  await loadSeriesVolume(files, {}, { pool });
  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const started = performance.now();
    await loadSeriesVolume(files, {}, { pool });
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return files.length / (times[Math.floor(RUNS / 2)] / 1000);
}

// Runs slicesPerSecond on one folder in a fresh Node process that loads only @covnet/imaging,
// as the pydicom anchor runs alone in its process. The bench's own process also loads
// TensorFlow.js for other suites, and there the figure comes out about 40 % lower.
function measureInChildProcess(dir: string, threads: number): number {
  const run = spawnSync(process.execPath, ['--import', 'tsx', __filename, dir, String(threads)], { encoding: 'utf8', timeout: 300_000 });
  if (run.status !== 0) throw new Error(`ingest measurement on ${dir} failed: ${run.error?.message ?? run.stderr}`);
  return Number(run.stdout.trim());
}

// The anchor script that peers' figures come from, run with the system Python; undefined, with
// a message, when it or pydicom is missing.
function measurePydicom(dir: string): number | undefined {
  const script = join(DATA, '..', 'anchors', 'pydicom_ingest.py');
  const run = spawnSync('/usr/bin/python3', [script, dir], { encoding: 'utf8', timeout: 300_000 });
  const value = Number(run.stdout?.trim());
  if (run.status !== 0 || !Number.isFinite(value)) {
    process.stderr.write(`ingest.uncompressed.pydicom_anchor skipped: ${run.error?.message ?? run.stderr.trim().split('\n').pop()}\n`);
    return undefined;
  }
  return value;
}

/**
 * Measures slices per second from 512x512 DICOM files to one HU volume (read, parse, decode,
 * rescale, order), median of 5 runs after a warm-up, in a child process of its own. The JPEG
 * Lossless copy of the series is written by dcmtk's dcmcjpeg (process 14 SV1) into a temporary folder.
 */
export async function benchIngest(): Promise<{ name: string; value: number; unit: string; note?: string }[]> {
  if (!existsSync(SERIES)) throw new Error(`series ${SERIES} not found; set COVNET_SHARED_DATA`);
  const files = readdirSync(SERIES).map((name) => join(SERIES, name));
  const threads = availableParallelism();
  // The plain figures decode on the calling thread. The `.pooled` ones use a DecodePool of
  // one worker per core, as the site agent's `run` does by default.
  const anchor = measurePydicom(SERIES);
  const oneThread = measureInChildProcess(SERIES, 1);
  const pooled = measureInChildProcess(SERIES, threads);
  const versus = (value: number) => (anchor === undefined ? '' : `, ${(value / anchor).toFixed(2)} times pydicom in this run`);
  const figures = [
    { name: 'ingest.uncompressed.slices_per_s', value: oneThread, unit: 'slices/s', note: `64 slices, implicit VR LE, one thread${versus(oneThread)}` },
    { name: 'ingest.uncompressed.pooled.slices_per_s', value: pooled, unit: 'slices/s', note: `64 slices, implicit VR LE, ${threads} decode threads${versus(pooled)}` },
  ];
  if (anchor !== undefined) {
    figures.push({ name: 'ingest.uncompressed.pydicom_anchor.slices_per_s', value: anchor, unit: 'slices/s', note: 'pydicom and numpy on the same files, run just before' });
  }

  const work = mkdtempSync(join(tmpdir(), 'covnet-bench-'));
  try {
    files.forEach((file, i) => {
      const out = join(work, `${i}.dcm`);
      const run = spawnSync('dcmcjpeg', ['+e1', file, out], { encoding: 'utf8' });
      if (run.status !== 0) throw new Error(`dcmcjpeg failed on ${file}: ${run.error?.message ?? run.stderr}`);
    });
    figures.push({ name: 'ingest.jpeg_lossless.slices_per_s', value: measureInChildProcess(work, 1), unit: 'slices/s', note: '64 slices, JPEG Lossless SV1 by dcmcjpeg, one thread' });
    figures.push({ name: 'ingest.jpeg_lossless.pooled.slices_per_s', value: measureInChildProcess(work, threads), unit: 'slices/s', note: `64 slices, JPEG Lossless SV1, ${threads} decode threads` });
  } catch (error) {
    process.stderr.write(`ingest.jpeg_lossless skipped: ${(error as Error).message}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return figures;
}

// Child-process entry: prints the slices per second of the folder given as the argument.
if (require.main === module) {
  const dir = process.argv[2];
  const threads = Number(process.argv[3] ?? '1');
  const files = readdirSync(dir).map((name) => join(dir, name));
  const pool = threads > 1 ? new DecodePool(threads) : undefined;
  slicesPerSecond(files, pool)
    .then(
      (value) => process.stdout.write(`${value}\n`),
      (error: Error) => {
        process.stderr.write(`${error.stack}\n`);
        process.exitCode = 1;
      },
    )
    .finally(() => pool?.close());
}
