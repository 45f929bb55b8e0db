import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSeriesVolume } from '@covnet/imaging';

// The 64-slice, 512x512 implicit VR series of Lung-PET-CT-Dx patient A0001, read in place.
const DATA = process.env.COVNET_SHARED_DATA ?? join(__dirname, '..', '..', 'shared', 'data');
const SERIES = join(
  DATA,
  'lung-pet-ct-dx/Lung-PET-CT-Dx/manifest-1675442780019/Lung-PET-CT-Dx/Lung_Dx-A0001/04-04-2007-NA-Chest-07990/2.000000-5mm-40805',
);
const RUNS = 5;

async function slicesPerSecond(files: string[]): Promise<number> {
  await loadSeriesVolume(files);
  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const started = performance.now();
    await loadSeriesVolume(files);
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return files.length / (times[Math.floor(RUNS / 2)] / 1000);
}

// Runs slicesPerSecond on one folder in a fresh Node process that loads only @covnet/imaging,
// as the pydicom anchor runs alone in its process. The bench's own process also loads
// TensorFlow.js for other suites, and there the figure comes out about 40 % lower.
function measureInChildProcess(dir: string): number {
  const run = spawnSync(process.execPath, ['--import', 'tsx', __filename, dir], { encoding: 'utf8', timeout: 300_000 });
  if (run.status !== 0) throw new Error(`ingest measurement on ${dir} failed: ${run.error?.message ?? run.stderr}`);
  return Number(run.stdout.trim());
}

/**
 * Measures slices per second from 512x512 DICOM files to one HU volume (read, parse, decode,
 * rescale, order), median of 5 runs after a warm-up, in a child process of its own. The JPEG
 * Lossless copy of the series is written by dcmtk's dcmcjpeg (process 14 SV1) into a temporary folder.
 */
export async function benchIngest(): Promise<{ name: string; value: number; unit: string; note?: string }[]> {
  if (!existsSync(SERIES)) throw new Error(`series ${SERIES} not found; set COVNET_SHARED_DATA`);
  const files = readdirSync(SERIES).map((name) => join(SERIES, name));
  const figures = [{ name: 'ingest.uncompressed.slices_per_s', value: measureInChildProcess(SERIES), unit: 'slices/s', note: '64 slices, implicit VR LE' }];

  const work = mkdtempSync(join(tmpdir(), 'covnet-bench-'));
  try {
    files.forEach((file, i) => {
      const out = join(work, `${i}.dcm`);
      const run = spawnSync('dcmcjpeg', ['+e1', file, out], { encoding: 'utf8' });
      if (run.status !== 0) throw new Error(`dcmcjpeg failed on ${file}: ${run.error?.message ?? run.stderr}`);
    });
    figures.push({ name: 'ingest.jpeg_lossless.slices_per_s', value: measureInChildProcess(work), unit: 'slices/s', note: '64 slices, JPEG Lossless SV1 by dcmcjpeg' });
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
  const files = readdirSync(dir).map((name) => join(dir, name));
  slicesPerSecond(files).then(
    (value) => process.stdout.write(`${value}\n`),
    (error: Error) => {
      process.stderr.write(`${error.stack}\n`);
      process.exitCode = 1;
    },
  );
}
