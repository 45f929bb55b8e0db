import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..', '..', '..');
const DATA = process.env.COVNET_SHARED_DATA ?? join(ROOT, '..', 'shared', 'data');
const LUNG = join(DATA, 'lung-pet-ct-dx');
const EDGE = join(DATA, 'dicom-edge-cases');
const present = existsSync(LUNG) && existsSync(EDGE);
if (!present) console.warn(`skipping site-agent CLI tests on real CT: ${DATA} is absent`);

function agent(...args: string[]) {
  const run = spawnSync('npm', ['run', '-s', 'site-agent', '--', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

function countFiles(dir: string): number {
  return readdirSync(dir).reduce((n, name) => {
    const path = join(dir, name);
    return n + (statSync(path).isDirectory() ? countFiles(path) : 1);
  }, 0);
}

interface ScanJson {
  series: { dir: string; rows: number; columns: number; slices: number; sliceSpacing: number; huMin: number; huMax: number; huMean: number; files: string[] }[];
  rejected: { files: string[]; reason: string }[];
  skipped: { path: string; reason: string }[];
}

describe.skipIf(!present)('site-agent CLI on real CT', () => {
  const work = mkdtempSync(join(tmpdir(), 'covnet-cli-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  describe('scan --json', () => {
    const run = present ? agent('scan', LUNG, '--json') : { status: null, stdout: '', stderr: '' };
    const report = run.status === 0 ? (JSON.parse(run.stdout) as ScanJson) : null;

    it('exits 0 with JSON on stdout', () => {
      expect(run.status, run.stderr).toBe(0);
      expect(report).not.toBeNull();
    });

    it('prints the geometry and HU of both series', () => {
      // Values from pydicom 2.3.1 with numpy: pixel_array * RescaleSlope + RescaleIntercept over all slices.
      const fiveMm = report!.series.find((s) => s.dir.endsWith('2.000000-5mm-40805'))!;
      expect([fiveMm.rows, fiveMm.columns, fiveMm.slices, fiveMm.sliceSpacing]).toEqual([512, 512, 64, 5]);
      expect([fiveMm.huMin, fiveMm.huMax]).toEqual([-1024, 2976]);
      expect(fiveMm.huMean).toBeCloseTo(-675.9681776762009, 6);
      const eightMm = report!.series.find((s) => s.dir.endsWith('B70f-62919'))!;
      expect([eightMm.slices, eightMm.sliceSpacing, eightMm.huMin, eightMm.huMax]).toEqual([30, 8, -1024, 1904]);
      expect(eightMm.huMean).toBeCloseTo(-536.0954568227132, 6);
    });

    it('lists every non-DICOM file it did not use', () => {
      const used = report!.series.reduce((n, s) => n + s.files.length, 0);
      expect(used + report!.skipped.length).toBe(countFiles(LUNG));
      for (const skipped of report!.skipped) expect(skipped.reason.length).toBeGreaterThan(0);
    });
  });

  describe('scan of broken files', () => {
    it('accounts for every file with a reason', () => {
      const run = agent('scan', EDGE, '--json');
      expect(run.status, run.stderr).toBe(0);
      const report = JSON.parse(run.stdout) as ScanJson;
      const used = report.series.reduce((n, s) => n + s.files.length, 0);
      const rejected = report.rejected.reduce((n, r) => n + r.files.length, 0);
      expect(used + rejected + report.skipped.length).toBe(countFiles(EDGE));
      const truncated = report.skipped.find((s) => s.path.endsWith('MR_truncated.dcm'));
      expect(truncated?.reason).toBeTruthy();
    });
  });

  describe('infer --json', () => {
    it('prints three class probabilities for a real series', () => {
      const checkpoint = join(work, 'model.cvnw');
      const init = agent('init-model', '--out', checkpoint, '--backbone', 'small', '--input-size', '64', '--max-slices', '8', '--seed', '5');
      expect(init.status, init.stderr).toBe(0);
      const series = join(LUNG, 'Lung-PET-CT-Dx', 'manifest-1675442780019', 'Lung-PET-CT-Dx', 'Lung_Dx-A0002');
      const out = join(work, 'infer');
      const run = agent('infer', series, '--model', checkpoint, '--out', out, '--slices', '2', '--json');
      expect(run.status, run.stderr).toBe(0);
      const result = JSON.parse(run.stdout) as {
        slices: number;
        probabilities: Record<string, number>;
        report: string;
        gradCam: { heatmaps: { file: string }[] };
      };
      expect(JSON.parse(readFileSync(result.report, 'utf8'))).toEqual(result);
      expect(result.gradCam.heatmaps.length).toBeLessThanOrEqual(2);
      for (const heatmap of result.gradCam.heatmaps) {
        // PNG signature: 0x89 'P' 'N' 'G'.
        expect(readFileSync(join(out, heatmap.file)).subarray(0, 4)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47]));
      }
      expect(Object.keys(result.probabilities)).toEqual(['covid19', 'cap', 'non_pneumonia']);
      const sum = Object.values(result.probabilities).reduce((a, b) => a + b, 0);
      expect(sum).toBeCloseTo(1, 5);
      expect(result.slices).toBe(8);
    });
  });

  describe('argument errors', () => {
    it('rejects an unknown command with usage', () => {
      const run = agent('train-everything');
      expect(run.status).toBe(2);
      expect(run.stderr).toMatch(/unknown command "train-everything"/);
    });
  });
});
