import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { HISTOGRAM_BINS, encodeWeights, type SiteMetrics, type TrainTask } from '@covnet/protocol';
import { FakeAgent, HELLO } from './support/fake-agent';
import { ADMIN_TOKEN, TOKENS, getJson, initialTensors, startFixture, type Fixture } from './support/fixtures';

// Debian's chromium package; no browser is ever downloaded.
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = process.env.COVNET_ARTIFACTS_DIR ?? join(__dirname, '..', '..', '..', 'var', 'artifacts');
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) process.stderr.write(`dashboard browser test skipped: ${CHROMIUM} is missing (apt-get install -y chromium)\n`);

function histogram(entries: Record<number, number> = {}): number[] {
  const bins = new Array<number>(HISTOGRAM_BINS).fill(0);
  for (const [bin, count] of Object.entries(entries)) bins[Number(bin)] = count;
  return bins;
}

/** Metrics with the given per-class AUC; the histograms put positives above negatives by `gap` bins. */
function metrics(auc: SiteMetrics['auc'], gap: number): SiteMetrics {
  return {
    valExams: 4,
    loss: 0.5,
    auc,
    // Two COVID-19 and two CAP exams: the histogram totals match valExams and the confusion rows.
    confusion: [[2, 0, 0], [0, 2, 0], [0, 0, 0]],
    histograms: {
      covid19: { positive: histogram({ [100 + gap]: 1, 60: 1 }), negative: histogram({ 100: 1, 80: 1 }) },
      cap: { positive: histogram({ 150: 2 }), negative: histogram({ 50: 2 }) },
      non_pneumonia: { positive: histogram(), negative: histogram({ 80: 4 }) },
    },
  };
}

// What each site reports, by round; the dashboard must draw exactly these AUCs.
const REPORTS: Record<number, Record<'site-a' | 'site-b', SiteMetrics>> = {
  1: { 'site-a': metrics({ covid19: 0.625, cap: 1, non_pneumonia: null }, 10), 'site-b': metrics({ covid19: 0.5, cap: 0.75, non_pneumonia: null }, -10) },
  2: { 'site-a': metrics({ covid19: 0.875, cap: 1, non_pneumonia: null }, 40), 'site-b': metrics({ covid19: 0.25, cap: 0.5, non_pneumonia: null }, -30) },
};

describe.skipIf(!hasChromium)('dashboard in headless Chromium', () => {
  let fixture: Fixture;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  const agents: Record<'site-a' | 'site-b', FakeAgent> = {} as never;

  async function playRound(round: number): Promise<void> {
    const payload = encodeWeights(initialTensors());
    for (const site of ['site-a', 'site-b'] as const) {
      const task = await agents[site].next<TrainTask>('round:train');
      expect(task.round).toBe(round);
      expect(await agents[site].upload(round, task.modelVersion, 2, payload)).toEqual({ ok: true, accepted: true });
    }
    for (const site of ['site-a', 'site-b'] as const) {
      const evaluate = await agents[site].next<{ modelVersion: number }>('round:evaluate');
      const reply = await agents[site].request('metrics:report', { round, modelVersion: evaluate.modelVersion, trainExams: 2, metrics: REPORTS[round][site] });
      expect(reply).toEqual({ ok: true });
    }
  }

  /** Reads the points of one chart: series name, round, AUC attribute and the point's y position. */
  async function points(className: string) {
    return page.$$eval(`figure[data-class="${className}"] circle.point`, (circles) =>
      circles.map((c) => ({
        series: c.parentElement!.getAttribute('data-series')!,
        round: Number(c.getAttribute('data-round')),
        auc: Number(c.getAttribute('data-auc')),
        cy: Number(c.getAttribute('cy')),
        title: c.querySelector('title')!.textContent!,
        top: Number(c.ownerSVGElement!.getAttribute('data-plot-top')),
        height: Number(c.ownerSVGElement!.getAttribute('data-plot-height')),
      })),
    );
  }

  beforeAll(async () => {
    fixture = await startFixture({ rounds: 2, minSites: 2 });
    for (const site of ['site-a', 'site-b'] as const) {
      agents[site] = FakeAgent.forToken(fixture.baseUrl, TOKENS[site]);
      await agents[site].connect();
      await agents[site].hello(site === 'site-b' ? { ...HELLO, backend: 'tensorflow', gpu: 'NVIDIA T4', agentVersion: '0.1.0' } : HELLO);
    }
    await playRound(1);

    profile = await mkdtemp(join(tmpdir(), 'dashboard-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1366, height: 768 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = context.pages()[0] ?? (await context.newPage());
  });

  afterAll(async () => {
    await context?.close();
    for (const agent of Object.values(agents)) agent.close();
    await fixture?.cleanup();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  it('draws the reported AUCs and updates live', async () => {
    await page.goto(`${fixture.baseUrl}/#token=${ADMIN_TOKEN}`);
    await page.waitForSelector('#connection.online');
    await page.waitForSelector('figure[data-class="covid19"] [data-series="site-a"] circle[data-round="1"]');

    const round1 = await points('covid19');
    for (const site of ['site-a', 'site-b'] as const) {
      const point = round1.find((p) => p.series === site && p.round === 1)!;
      expect(point.auc, site).toBe(REPORTS[1][site].auc.covid19);
      expect(point.cy, site).toBeCloseTo(point.top + (1 - point.auc) * point.height, 6);
      expect(point.title, site).toBe(`${site}, round 1: AUC ${REPORTS[1][site].auc.covid19!.toFixed(3)}`);
    }
    const metrics1 = await getJson(`${fixture.baseUrl}/api/rounds/1/metrics`);
    const pooled1 = round1.find((p) => p.series === 'pooled' && p.round === 1)!;
    expect(pooled1.auc).toBe(metrics1.body.pooled.auc.covid19);
    const band = await page.getAttribute('figure[data-class="covid19"] polygon.band', 'data-low');
    expect(Number(band)).toBe(metrics1.body.pooled.interval.covid19.low);
    // No site has a non-pneumonia positive, so that chart has no point at all.
    expect(await points('non_pneumonia')).toEqual([]);
    expect(await page.textContent('#sites tr[data-site="site-a"]')).toContain('online');
    expect(await page.textContent('#sites tr[data-site="site-c"]')).toContain('offline');
    const siteB = await page.$$eval('#sites tr[data-site="site-b"] td', (cells) => cells.map((c) => c.textContent));
    expect(siteB[3]).toBe('tensorflow on NVIDIA T4');
    expect(siteB[4]).toBe('0.1.0');
    expect(siteB.slice(5)).toEqual(['1 / 1 / 1', '1 / 1 / 1']);
    expect(await page.textContent('#rounds tr[data-round="1"]')).toContain('site-a, site-b');

    // Round 2 runs while the page is open: the charts change without a reload.
    await playRound(2);
    await page.waitForSelector('figure[data-class="cap"] [data-series="site-b"] circle[data-round="2"]', { timeout: 15_000 });
    const capPoints = await points('cap');
    expect(capPoints.filter((p) => p.series === 'site-b').map((p) => p.auc)).toEqual([0.75, 0.5]);
    expect(capPoints.filter((p) => p.series === 'site-a').map((p) => p.auc)).toEqual([1, 1]);
    const series = await getJson(`${fixture.baseUrl}/api/metrics/auc`);
    expect(capPoints.filter((p) => p.series === 'pooled').map((p) => p.auc)).toEqual(series.body.classes.cap.pooled.map((p: { auc: number }) => p.auc));

    const models = await getJson(`${fixture.baseUrl}/api/models`);
    const best = models.body.find((m: { best: boolean }) => m.best);
    await page.waitForSelector(`#models tr[data-version="${best.version}"] .badge.best`);
    expect(await page.textContent(`#models tr[data-version="${best.version}"]`)).toContain(best.sha256);

    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
  });
});
