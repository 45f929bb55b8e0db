import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..');

interface Report {
  rounds: {
    round: number;
    sites: { site: string; trainExams: number; valExams: number; auc: Record<string, number | null> }[];
    pooled: { auc: Record<string, number | null> };
  }[];
}

describe('federation demo', () => {
  const work = mkdtempSync(join(tmpdir(), 'covnet-demo-'));
  const reportFile = join(work, 'report.json');
  const started = Date.now();
  const run = spawnSync('npm', ['run', '-s', 'demo', '--', '--report', reportFile, '--work-dir', join(work, 'demo')], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 15 * 60_000,
  });
  const seconds = (Date.now() - started) / 1000;
  const report = run.status === 0 ? (JSON.parse(readFileSync(reportFile, 'utf8')) as Report) : null;

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('exits 0 within ten minutes', () => {
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(seconds).toBeLessThan(600);
  });

  it('reports three rounds of six sites', () => {
    expect(report!.rounds.map((r) => r.round)).toEqual([1, 2, 3]);
    for (const round of report!.rounds) expect(round.sites).toHaveLength(6);
  });

  it('gives sites different sizes and class mixes', () => {
    const sizes = report!.rounds[0].sites.map((s) => s.trainExams + s.valExams);
    expect(new Set(sizes).size).toBe(6);
  });

  it('reaches pooled COVID-19 AUC above 0.8 after round 3', () => {
    // The acceptance threshold of the demo on its default seed.
    expect(report!.rounds[2].pooled.auc.covid19).toBeGreaterThan(0.8);
  });

  it('prints the per-site table', () => {
    expect(run.stdout).toMatch(/round 3 \(global model v3\)/);
    expect(run.stdout).toMatch(/^pooled\s+\d+\s+\d+\s+\d\.\d{3}/m);
    for (const site of ['hospital-a', 'hospital-f']) expect(run.stdout).toContain(site);
  });
});
