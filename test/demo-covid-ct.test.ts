import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..');
const DATASET = process.env.COVNET_COVID_CT_DIR ?? join(ROOT, '..', 'shared', 'data', 'covid-ct-ucsd');
const present = existsSync(join(DATASET, 'labels.csv'));
if (!present) console.warn(`skipping the COVID-CT demo test: ${DATASET} is absent`);

interface Report {
  rounds: { round: number; sites: { site: string; valExams: number; auc: { covid19: number | null } }[] }[];
  comparison: { site: string; valExams: number; federated: number | null; pooled: number | null; local: number | null }[];
}

describe.skipIf(!present)('COVID-CT demo', () => {
  const work = mkdtempSync(join(tmpdir(), 'covnet-covid-demo-'));
  const reportFile = join(work, 'report.json');
  // One round keeps the test short; the full demo runs three.
  const run = present
    ? spawnSync('npm', ['run', '-s', 'demo', '--', '--dataset', 'covid-ct', '--data-dir', DATASET, '--rounds', '1', '--report', reportFile, '--work-dir', join(work, 'demo'), '--timeout-s', '600'], {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 15 * 60_000,
      })
    : null;
  const report = run?.status === 0 ? (JSON.parse(readFileSync(reportFile, 'utf8')) as Report) : null;

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('exits 0', () => {
    expect(run!.status, `${run!.stdout}\n${run!.stderr}`).toBe(0);
  });

  it('scores three regimes on the same validation images', () => {
    expect(report!.comparison).toHaveLength(6);
    const federated = new Map(report!.rounds[0].sites.map((s) => [s.site, s]));
    for (const row of report!.comparison) {
      expect(row.valExams, row.site).toBe(federated.get(row.site)!.valExams);
      expect(row.federated, row.site).toBe(federated.get(row.site)!.auc.covid19);
      // Every site has both classes in validation, so each AUC is a number in [0, 1].
      for (const auc of [row.federated, row.pooled, row.local]) {
        expect(auc, row.site).not.toBeNull();
        expect(auc!).toBeGreaterThanOrEqual(0);
        expect(auc!).toBeLessThanOrEqual(1);
      }
    }
  });

  it('puts every image in one validation set at most', () => {
    const total = report!.comparison.reduce((n, row) => n + row.valExams, 0);
    // 746 images, about 30 % of each site's figure groups in validation.
    expect(total).toBeGreaterThan(150);
    expect(total).toBeLessThan(300);
  });
});
