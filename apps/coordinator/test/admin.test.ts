import { createHash } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeWeights, sha256Hex, type TrainTask } from '@covnet/protocol';
import { sitesCommand } from '../src/cli/sites-command';
import { FakeAgent, HELLO } from './support/fake-agent';
import { ADMIN_TOKEN, TOKENS, getJson, initialTensors, queryDatabase, sendJson, startFixture, type Fixture } from './support/fixtures';

async function connectError(agent: FakeAgent): Promise<{ message: string; data?: { code: string } }> {
  try {
    await agent.connect();
  } catch (error) {
    return error as { message: string; data?: { code: string } };
  }
  throw new Error('connection was accepted');
}

function disconnectReason(agent: FakeAgent): Promise<string> {
  return new Promise((resolve) => agent.socket.once('disconnect', (reason) => resolve(reason)));
}

/** Runs `coordinator sites ...` in-process against the fixture's database. */
async function runSitesCommand(fixture: Fixture, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await sitesCommand([...args, '--data-dir', fixture.dataDir], { DATABASE_URL: fixture.database.env.DATABASE_URL }, {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
  });
  return { code, stdout, stderr };
}

describe('admin API', () => {
  let fixture: Fixture | null = null;
  const agents: FakeAgent[] = [];

  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.close();
    await fixture?.cleanup();
    fixture = null;
  });

  function agent(token: string): FakeAgent {
    const created = FakeAgent.forToken(fixture!.baseUrl, token);
    agents.push(created);
    return created;
  }

  describe('when a request has no valid admin token', () => {
    it('answers 401 on reads and writes', async () => {
      fixture = await startFixture();
      for (const path of ['/api/sites', '/api/rounds', '/api/rounds/1/metrics', '/api/metrics/auc', '/api/models', '/api/overview', '/api/experiments']) {
        expect((await getJson(`${fixture.baseUrl}${path}`, null)).status, path).toBe(401);
        expect((await getJson(`${fixture.baseUrl}${path}`, 'not-the-admin-token')).status, path).toBe(401);
      }
      const write = await sendJson('POST', `${fixture.baseUrl}/api/sites`, { name: 'site-d' }, null);
      expect(write.status).toBe(401);
      expect(write.body.message).toContain('Authorization: Bearer');
      expect((await sendJson('POST', `${fixture.baseUrl}/api/sites/site-a/revoke`, undefined, 'wrong')).status).toBe(401);
      expect((await sendJson('POST', `${fixture.baseUrl}/api/experiments/test/pause`, undefined, null)).status).toBe(401);
    });

    it('still serves the health check and the API docs', async () => {
      fixture = await startFixture();
      expect(await getJson(`${fixture.baseUrl}/api/health`, null)).toEqual({ status: 200, body: { status: 'ok' } });
      const docs = await getJson(`${fixture.baseUrl}/api/docs-json`, null);
      expect(docs.body.openapi).toMatch(/^3\./);
      for (const path of [
        '/api/sites',
        '/api/sites/{name}/revoke',
        '/api/rounds',
        '/api/rounds/{n}/metrics',
        '/api/metrics/auc',
        '/api/models',
        '/api/models/{version}/download',
        '/api/experiments',
        '/api/experiments/{name}/{action}',
      ]) {
        expect(docs.body.paths, path).toHaveProperty([path]);
      }
      const page = await fetch(`${fixture.baseUrl}/api/docs`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('swagger');
    });
  });

  describe('when COVNET_ADMIN_TOKEN is not set', () => {
    it('creates a token file readable by its owner only', async () => {
      fixture = await startFixture({ env: { COVNET_ADMIN_TOKEN: '' } });
      const path = join(fixture.dataDir, 'admin-token');
      const token = (await readFile(path, 'utf8')).trim();
      expect(token).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      expect((await getJson(`${fixture.baseUrl}/api/sites`, token)).status).toBe(200);
      expect((await getJson(`${fixture.baseUrl}/api/sites`)).status).toBe(401);
    });
  });

  describe('when a site is added over REST', () => {
    it('returns a token that connects and stores only its hash', async () => {
      fixture = await startFixture();
      const added = await sendJson('POST', `${fixture.baseUrl}/api/sites`, { name: 'site-d' });
      expect(added.status).toBe(201);
      expect(added.body.name).toBe('site-d');
      const token = added.body.token as string;
      expect(token.length).toBeGreaterThanOrEqual(43);

      const d = agent(token);
      await d.connect();
      expect(await d.hello({ ...HELLO, backend: 'tensorflow', gpu: 'NVIDIA A100-SXM4-40GB' })).toMatchObject({ ok: true, site: 'site-d' });
      const listed = (await getJson(`${fixture.baseUrl}/api/sites`)).body.find((s: { name: string }) => s.name === 'site-d');
      expect(listed).toMatchObject({ backend: 'tensorflow', gpu: 'NVIDIA A100-SXM4-40GB', online: true });
      const rows = await queryDatabase<Record<string, unknown>>(fixture, "SELECT * FROM sites WHERE name = 'site-d'");
      expect(rows[0].token_sha256).toBe(createHash('sha256').update(token).digest('hex'));
      expect(Object.values(rows[0])).not.toContain(token);

      const again = await sendJson('POST', `${fixture.baseUrl}/api/sites`, { name: 'site-d' });
      expect(again.status).toBe(409);
      expect((await sendJson('POST', `${fixture.baseUrl}/api/sites`, { name: 'has space' })).status).toBe(400);
    });
  });

  describe('when a participant is revoked mid-round', () => {
    it('cuts it off and closes the round without it', async () => {
      fixture = await startFixture({ minSites: 2 });
      const a = agent(TOKENS['site-a']);
      const b = agent(TOKENS['site-b']);
      const c = agent(TOKENS['site-c']);
      // The experiment stays paused until all three sites have sent hello, so all three are participants.
      await sendJson('POST', `${fixture.baseUrl}/api/experiments/test/pause`);
      for (const site of [a, b, c]) await site.connect();
      for (const site of [a, b, c]) await site.hello();
      await sendJson('POST', `${fixture.baseUrl}/api/experiments/test/start`);
      const task = await a.next<TrainTask>('round:train');
      await b.next<TrainTask>('round:train');
      await c.next<TrainTask>('round:train');
      expect(task.round).toBe(1);
      const rounds = await getJson(`${fixture.baseUrl}/api/rounds`);
      expect(rounds.body[0].participants).toEqual(['site-a', 'site-b', 'site-c']);

      const payload = encodeWeights(initialTensors());
      expect(await a.upload(1, 0, 1, payload)).toEqual({ ok: true, accepted: true });
      const cut = disconnectReason(c);
      const revoked = await sendJson('POST', `${fixture.baseUrl}/api/sites/site-c/revoke`);
      expect(revoked.status).toBe(200);
      expect(revoked.body.revokedAt).not.toBeNull();
      expect(await cut).toBe('io server disconnect');

      const retry = agent(TOKENS['site-c']);
      const error = await connectError(retry);
      expect(error.data?.code).toBe('auth_revoked');

      expect(await b.upload(1, 0, 1, payload)).toEqual({ ok: true, accepted: true });
      await a.next('round:evaluate');
      const after = await getJson(`${fixture.baseUrl}/api/rounds`);
      expect(after.body[0].leftOut).toEqual([{ site: 'site-c', reason: 'revoked' }]);
      expect(after.body[0].state).toBe('evaluating');
      const sites = await getJson(`${fixture.baseUrl}/api/sites`);
      expect(sites.body.find((s: { name: string }) => s.name === 'site-c')).toMatchObject({ online: false });
    });
  });

  describe('when sites are managed with the command line', () => {
    it('adds a site whose token connects and revokes it within seconds', async () => {
      fixture = await startFixture();
      const added = await runSitesCommand(fixture, ['add', 'site-e']);
      expect(added.code).toBe(0);
      expect(added.stderr).toContain('shown only this once');
      const token = added.stdout.trim();
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);

      const e = agent(token);
      await e.connect();
      expect(await e.hello()).toMatchObject({ ok: true, site: 'site-e' });
      expect((await runSitesCommand(fixture, ['add', 'site-e'])).code).toBe(1);

      const cut = disconnectReason(e);
      const started = Date.now();
      expect((await runSitesCommand(fixture, ['revoke', 'site-e'])).code).toBe(0);
      expect(await cut).toBe('io server disconnect');
      expect(Date.now() - started).toBeLessThan(5000);
      const list = await runSitesCommand(fixture, ['list']);
      expect(list.stdout).toMatch(/^site-e\trevoked /m);
      expect(list.stdout).toMatch(/^site-a\tactive\t/m);
      expect((await runSitesCommand(fixture, ['revoke', 'site-x'])).code).toBe(1);
      expect((await runSitesCommand(fixture, ['add'])).code).toBe(2);
    });
  });

  describe('when a model version is downloaded', () => {
    it('serves the checkpoint bytes with their SHA-256', async () => {
      fixture = await startFixture();
      const response = await fetch(`${fixture.baseUrl}/api/models/0/download`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect(response.status).toBe(200);
      const bytes = Buffer.from(await response.arrayBuffer());
      expect(sha256Hex(bytes)).toBe(sha256Hex(fixture.initialPayload));
      const models = await getJson(`${fixture.baseUrl}/api/models`);
      expect(models.body[0]).toMatchObject({ version: 0, sha256: sha256Hex(fixture.initialPayload), downloadUrl: '/api/models/0/download', best: false });
      expect((await getJson(`${fixture.baseUrl}/api/models/9/download`)).status).toBe(404);
    });
  });

  describe('when an experiment names its initial model over REST', () => {
    it('accepts only files inside the data folder', async () => {
      fixture = await startFixture();
      for (const initialModel of ['/etc/passwd', '../outside.cvnw', '.']) {
        const response = await sendJson('POST', `${fixture.baseUrl}/api/experiments`, { name: 'outside', initialModel });
        expect(response.status, initialModel).toBe(400);
        expect(response.body.message, initialModel).toContain("initialModel must name a file inside the coordinator's data folder");
      }

      // Inside the data folder but not a weight file: created, then start returns 422 naming the file.
      await writeFile(join(fixture.dataDir, 'not-weights.cvnw'), 'not weights');
      const created = await sendJson('POST', `${fixture.baseUrl}/api/experiments`, { name: 'inside', initialModel: 'not-weights.cvnw' });
      expect(created.status).toBe(201);
      const started = await sendJson('POST', `${fixture.baseUrl}/api/experiments/inside/start`);
      expect(started.status).toBe(422);
      expect(started.body.message).toContain(`initial model ${join(fixture.dataDir, 'not-weights.cvnw')} is not a valid weight file`);
    });
  });

  describe('when an experiment is paused and resumed', () => {
    it('holds the next round until start', async () => {
      fixture = await startFixture({ rounds: 1 });
      const paused = await sendJson('POST', `${fixture.baseUrl}/api/experiments/test/pause`);
      expect(paused.status).toBe(200);
      expect(paused.body.state).toBe('paused');
      expect((await sendJson('POST', `${fixture.baseUrl}/api/experiments/test/pause`)).status).toBe(409);
      expect((await sendJson('POST', `${fixture.baseUrl}/api/experiments/other/start`)).status).toBe(404);
      expect((await sendJson('POST', `${fixture.baseUrl}/api/experiments/test/jump`)).status).toBe(400);

      const a = agent(TOKENS['site-a']);
      const b = agent(TOKENS['site-b']);
      await a.connect();
      await b.connect();
      await a.hello();
      await b.hello();
      await expect(a.next('round:train', 500)).rejects.toThrow('no round:train');
      expect((await sendJson('POST', `${fixture.baseUrl}/api/experiments/test/start`)).body.state).toBe('running');
      expect((await a.next<TrainTask>('round:train')).round).toBe(1);
    });
  });
});

describe('database types', () => {
  let fixture: Fixture | null = null;

  afterEach(async () => {
    await fixture?.cleanup();
    fixture = null;
  });

  it('returns numbers for ids, counts and sizes', async () => {
    fixture = await startFixture();
    const a = FakeAgent.forToken(fixture.baseUrl, TOKENS['site-a']);
    try {
      await a.connect();
      await a.hello();
      await new Promise((resolve) => setTimeout(resolve, 100));
      const experiments = await getJson(`${fixture.baseUrl}/api/experiments`);
      expect(experiments.body).toHaveLength(1);
      expect(typeof experiments.body[0].id).toBe('number');
      expect(experiments.body[0].settings.rounds).toBe(1);
      const site = (await getJson(`${fixture.baseUrl}/api/sites`)).body.find((s: { name: string }) => s.name === 'site-a');
      expect(site.trainExams).toEqual({ covid19: 1, cap: 1, non_pneumonia: 1 });
      const models = await getJson(`${fixture.baseUrl}/api/models`);
      expect(models.body[0].byteLength).toBe(fixture.initialPayload.byteLength);
      const overview = await getJson(`${fixture.baseUrl}/api/overview`);
      expect(overview.body).toMatchObject({ experiment: 'test', sitesActive: 3, latestModelVersion: 0, bestModelVersion: null });
    } finally {
      a.close();
    }
  });
});
