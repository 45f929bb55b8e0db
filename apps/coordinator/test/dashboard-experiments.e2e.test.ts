import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { encodeWeights } from '@covnet/protocol';
import { ADMIN_TOKEN, startFixture, type Fixture } from './support/fixtures';

// Debian's chromium package; no browser is ever downloaded.
const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) process.stderr.write(`dashboard experiment test skipped: ${CHROMIUM} is missing (apt-get install -y chromium)\n`);

// Two experiments that differ in their planned rounds, so the overview shows which one is open.
const CONSORTIUM = `
experiments:
  - name: alpha
    rounds: 1
    minSites: 2
    initialModel: alpha.cvnw
  - name: beta
    rounds: 4
    minSites: 2
    initialModel: beta.cvnw
`;

describe.skipIf(!hasChromium)('dashboard with two experiments', () => {
  let fixture: Fixture;
  let context: BrowserContext;
  let page: Page;
  let profile: string;

  beforeAll(async () => {
    fixture = await startFixture({
      consortiumYaml: CONSORTIUM,
      allExperiments: true,
      beforeStart: async (dataDir) => {
        await writeFile(join(dataDir, 'alpha.cvnw'), encodeWeights([{ name: 'alpha/w', shape: [2], data: new Float32Array([0, 0]) }]));
        await writeFile(join(dataDir, 'beta.cvnw'), encodeWeights([{ name: 'beta/w', shape: [1], data: new Float32Array([1]) }]));
      },
    });
    profile = await mkdtemp(join(tmpdir(), 'dashboard-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1366, height: 768 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = context.pages()[0] ?? (await context.newPage());
  });

  afterAll(async () => {
    await context?.close();
    await fixture?.cleanup();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  it('switches every experiment view with the picker', async () => {
    await page.goto(`${fixture.baseUrl}/#token=${ADMIN_TOKEN}`);
    await page.waitForSelector('#connection.online');
    expect(await page.isVisible('#experiment')).toBe(true);
    expect(await page.$$eval('#experiment option', (options) => options.map((o) => (o as unknown as { value: string }).value))).toEqual(['alpha', 'beta']);
    expect(await page.textContent('[data-card="experiment"] .value')).toMatch(/^alpha/);
    expect(await page.textContent('[data-card="rounds done"] .value')).toBe('0 of 1');

    await page.selectOption('#experiment', 'beta');
    // Evaluated in the page, where the DOM exists.
    await page.waitForFunction(`document.querySelector('[data-card="experiment"] .value')?.textContent.startsWith('beta')`);
    expect(await page.textContent('[data-card="rounds done"] .value')).toBe('0 of 4');
  });
});
