import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { describePayload, encodeWeights, type EvaluateTask, type NamedTensor, type TrainTask } from '@covnet/protocol';
import { FakeAgent } from '../apps/coordinator/test/support/fake-agent';
import { ADMIN_TOKEN, AgentProcess, CoordinatorProcess, LIGHT_MODEL_META, lightModel, prepareFederation, type LocalFederation } from '../scripts/chaos/federation';
import { withDatabase } from '../scripts/chaos/replay';
import { FIXED_METRICS, LightAgent } from '../scripts/chaos/light-agent';

// The three-tensor test model, all zeros, and two updates. Site 1 trained on
// 1 exam and site 2 on 3, so FedAvg is (1*a + 3*b) / 4, and every value and
// partial sum is exact in float32.
const ZERO_MODEL: NamedTensor[] = [
  { name: 'dense/kernel', shape: [2, 3], data: new Float32Array(6) },
  { name: 'dense/bias', shape: [3], data: new Float32Array(3) },
  { name: 'bn/moving_mean', shape: [3], data: new Float32Array(3) },
];
const UPDATE_1: NamedTensor[] = [
  { name: 'dense/kernel', shape: [2, 3], data: new Float32Array([1, 2, -4, 0.5, 8, 3]) },
  { name: 'dense/bias', shape: [3], data: new Float32Array([0, 1, 2]) },
  { name: 'bn/moving_mean', shape: [3], data: new Float32Array([0.25, 0, 1]) },
];
const UPDATE_2: NamedTensor[] = [
  { name: 'dense/kernel', shape: [2, 3], data: new Float32Array([5, 2, 0, 0.5, -8, 7]) },
  { name: 'dense/bias', shape: [3], data: new Float32Array([4, 1, -2]) },
  { name: 'bn/moving_mean', shape: [3], data: new Float32Array([0.25, 4, 1]) },
];
// By hand: kernel (1+15)/4, (2+6)/4, (-4+0)/4, (0.5+1.5)/4, (8-24)/4, (3+21)/4;
// bias (0+12)/4, (1+3)/4, (2-6)/4; moving mean (0.25+0.75)/4, (0+12)/4, (1+3)/4.
const EXPECTED_V1: NamedTensor[] = [
  { name: 'dense/kernel', shape: [2, 3], data: new Float32Array([4, 2, -1, 0.5, -4, 6]) },
  { name: 'dense/bias', shape: [3], data: new Float32Array([3, 1, -1]) },
  { name: 'bn/moving_mean', shape: [3], data: new Float32Array([0.25, 3, 1]) },
];
// Hello of a fake site: 3 training exams, so it may weigh its update by 1 or 3.
const HELLO = {
  agentVersion: 'test',
  backend: 'none',
  trainExams: { covid19: 1, cap: 1, non_pneumonia: 1 },
  valExams: { covid19: 1, cap: 1, non_pneumonia: 1 },
};

interface RoundRow {
  number: number;
  state: string;
  participants: string;
  left_out: string;
  started_at: string;
  ended_at: string | null;
}

function query<T>(federation: LocalFederation, sql: string, parameters: unknown[] = []): Promise<T[]> {
  return withDatabase(join(federation.dataDir, 'coordinator.sqlite'), (database) => database.query(sql, parameters));
}

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('recovery from killed processes', () => {
  const cleanups: (() => Promise<void>)[] = [];

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function federationOf(sites: number, model: NamedTensor[]): Promise<LocalFederation> {
    const workDir = mkdtempSync(join(tmpdir(), 'covnet-recovery-'));
    cleanups.push(async () => rmSync(workDir, { recursive: true, force: true }));
    return prepareFederation(workDir, sites, model);
  }

  function coordinatorOf(federation: LocalFederation, flags: string[]): CoordinatorProcess {
    const coordinator = new CoordinatorProcess(federation, flags);
    cleanups.push(() => coordinator.kill());
    return coordinator;
  }

  async function joined(federation: LocalFederation, site: number): Promise<FakeAgent> {
    const agent = FakeAgent.forToken(federation.url, federation.sites[site].token);
    cleanups.push(async () => agent.close());
    await agent.connect();
    expect((await agent.hello(HELLO)).ok).toBe(true);
    return agent;
  }

  describe('when the coordinator is killed mid-round', () => {
    it('keeps the accepted update and ends with the FedAvg of both', async () => {
      const federation = await federationOf(2, ZERO_MODEL);
      const coordinator = coordinatorOf(federation, ['--rounds', '1', '--min-sites', '2', '--round-timeout-s', '60', '--chunk-bytes', '64']);
      await coordinator.start();
      const one = await joined(federation, 0);
      const two = await joined(federation, 1);
      await one.next<TrainTask>('round:train');
      await two.next<TrainTask>('round:train');

      const payload1 = encodeWeights(UPDATE_1);
      expect(await one.upload(1, 0, 1, payload1)).toEqual({ ok: true, accepted: true });
      // Site 2 is half-way through its upload when the coordinator dies.
      const payload2 = encodeWeights(UPDATE_2);
      const ref2 = describePayload(payload2, 40);
      const begun = await two.begin(1, 0, 3, payload2, 40, ref2);
      if (!begun.ok) throw new Error(begun.error.message);
      expect(await two.sendChunk(begun.uploadId, payload2, ref2, 0)).toEqual({ ok: true, nextIndex: 1 });
      await coordinator.kill();
      one.close();
      two.close();

      await coordinator.start();
      const oneAgain = await joined(federation, 0);
      const twoAgain = await joined(federation, 1);
      // Site 1's update survived: sending it again is acknowledged as a duplicate, and another one conflicts.
      expect(await oneAgain.begin(1, 0, 1, payload1, 40)).toEqual({ ok: true, uploadId: '', nextIndex: describePayload(payload1, 40).chunkCount, duplicate: true });
      const conflicting = await oneAgain.upload(1, 0, 1, encodeWeights(UPDATE_2));
      expect(conflicting.ok).toBe(false);
      if (!conflicting.ok) expect(conflicting.error.code).toBe('conflicting_update');
      // Site 2 still owes its update and receives the task again; its unfinished upload died with the process.
      expect(await twoAgain.next<TrainTask>('round:train')).toMatchObject({ round: 1, modelVersion: 0 });
      const resent = await twoAgain.begin(1, 0, 3, payload2, 40, ref2);
      expect(resent).toMatchObject({ ok: true, nextIndex: 0 });
      expect(await twoAgain.upload(1, 0, 3, payload2)).toEqual({ ok: true, accepted: true });

      const evaluate = await oneAgain.next<EvaluateTask>('round:evaluate');
      expect(evaluate.modelVersion).toBe(1);
      const checkpoint = readFileSync(join(federation.dataDir, 'checkpoints', 'model-v1.cvnw'));
      expect(checkpoint.equals(encodeWeights(EXPECTED_V1, 'float32', LIGHT_MODEL_META))).toBe(true);

      const updates = await query<{ site: string; payload_path: string | null }>(federation, 'SELECT site, payload_path FROM updates ORDER BY id');
      expect(updates).toEqual([
        { site: 'site-01', payload_path: null },
        { site: 'site-02', payload_path: null },
      ]);
      // The stored updates are deleted once the checkpoint is recorded.
      expect(existsSync(join(federation.dataDir, 'updates', 'default', 'round-1'))).toBe(false);
    });

    it('gives the same checkpoint whenever it is killed after the updates', async () => {
      const federation = await federationOf(2, ZERO_MODEL);
      const coordinator = coordinatorOf(federation, ['--rounds', '2', '--min-sites', '2', '--round-timeout-s', '60', '--chunk-bytes', '64']);
      await coordinator.start();
      const one = await joined(federation, 0);
      const two = await joined(federation, 1);
      await one.next<TrainTask>('round:train');
      await two.next<TrainTask>('round:train');
      expect(await one.upload(1, 0, 1, encodeWeights(UPDATE_1))).toEqual({ ok: true, accepted: true });
      expect(await two.upload(1, 0, 3, encodeWeights(UPDATE_2))).toEqual({ ok: true, accepted: true });
      // Killed as soon as the second update is acknowledged: in training, aggregating or evaluating.
      await coordinator.kill();
      const [killedIn] = await query<{ state: string }>(federation, 'SELECT state FROM rounds WHERE number = 1');
      expect(['training', 'aggregating', 'evaluating']).toContain(killedIn.state);

      await coordinator.start();
      const oneAgain = await joined(federation, 0);
      const twoAgain = await joined(federation, 1);
      const evaluate = await oneAgain.next<EvaluateTask>('round:evaluate');
      await twoAgain.next<EvaluateTask>('round:evaluate');
      expect(evaluate).toMatchObject({ round: 1, modelVersion: 1 });
      const checkpoint = readFileSync(join(federation.dataDir, 'checkpoints', 'model-v1.cvnw'));
      expect(checkpoint.equals(encodeWeights(EXPECTED_V1, 'float32', LIGHT_MODEL_META)), `killed in ${killedIn.state}`).toBe(true);
      const versions = await query<{ version: number }>(federation, 'SELECT version FROM model_versions ORDER BY version');
      expect(versions.map((v) => v.version)).toEqual([0, 1]);

      // Round 2 follows from version 1 as usual.
      for (const agent of [oneAgain, twoAgain]) {
        expect(await agent.request('metrics:report', { round: 1, modelVersion: 1, trainExams: 3, metrics: FIXED_METRICS })).toEqual({ ok: true });
      }
      expect(await oneAgain.next<TrainTask>('round:train')).toMatchObject({ round: 2, modelVersion: 1 });
    });
  });

  describe('when an agent is killed mid-training', () => {
    it('closes the round at quorum and the restarted agent rejoins', async () => {
      const federation = await federationOf(3, lightModel(4096));
      const timeoutS = 3;
      const rounds = 6;
      const coordinator = coordinatorOf(federation, ['--rounds', String(rounds), '--min-sites', '2', '--round-timeout-s', String(timeoutS)]);
      await coordinator.start();

      const siteThreeOnline = () =>
        waitFor('site 3 to be online', async () => {
          const response = await fetch(`${federation.url}/api/sites`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
          const sites = (await response.json()) as { name: string; online: boolean }[];
          return sites.find((s) => s.name === 'site-03')?.online;
        });
      // Site 3 is a process that trains for 6 s, so it is still training
      // when the others are done and it is killed. Should a round start
      // with site 3 and only one other site, it waits for site 3's update.
      const siteThree = new AgentProcess(federation, federation.sites[2], { trainExams: 3, trainMs: 6_000, seed: 5 });
      cleanups.push(() => siteThree.kill());
      siteThree.start();
      await siteThreeOnline();

      // Sites 1 and 2 run in this process. They hold back their evaluation of
      // the round in which site 3 dies until site 3 is online again, so that
      // the next round starts with site 3 back.
      let killedIn = Number.POSITIVE_INFINITY;
      let backOnline: () => void = () => {};
      const siteThreeBack = new Promise<void>((resolve) => (backOnline = resolve));
      const inProcess = [0, 1].map((i) => {
        const agent = new LightAgent({
          url: federation.url,
          token: federation.sites[i].token,
          site: federation.sites[i].name,
          trainExams: 1 + i,
          trainMs: 200,
          seed: 5,
          beforeTask: (task, round) => (task === 'evaluate' && round === killedIn ? siteThreeBack : Promise.resolve()),
        });
        cleanups.push(async () => agent.close());
        agent.run().catch(() => {});
        return agent;
      });

      const round = await waitFor('a round where site 3 trains and the others are done', async () => {
        const [open] = await query<RoundRow>(federation, 'SELECT * FROM rounds ORDER BY number DESC LIMIT 1');
        if (open?.state !== 'training' || !JSON.parse(open.participants).includes('site-03')) return null;
        // A round that started with site 3 and one other site closes on site
        // 3's update. Until its state changes, it too shows two updates. So the
        // test checks which sites sent them, not only how many there are.
        const updates = await query<{ site: string }>(federation, 'SELECT site FROM updates WHERE round = ? ORDER BY site', [open.number]);
        return updates.map((u) => u.site).join() === 'site-01,site-02' ? open : null;
      });
      killedIn = round.number;
      await siteThree.kill();

      // The round closes at the deadline, at quorum, and records why site 3 is missing.
      const closed = await waitFor('the round to close', async () => {
        const [row] = await query<RoundRow>(federation, 'SELECT * FROM rounds WHERE number = ?', [killedIn]);
        return row.state !== 'training' ? row : null;
      });
      expect(JSON.parse(closed.left_out)).toEqual([{ site: 'site-03', reason: 'disconnected' }]);
      expect(Date.parse(closed.ended_at ?? new Date().toISOString()) - Date.parse(closed.started_at)).toBeGreaterThanOrEqual(timeoutS * 1000);

      const restarted = new AgentProcess(federation, federation.sites[2], { trainExams: 3, trainMs: 200, seed: 5 });
      cleanups.push(() => restarted.kill());
      restarted.start();
      await siteThreeOnline();
      backOnline();
      expect(killedIn).toBeLessThan(rounds);
      expect(await coordinator.exited).toBe(0);

      const rows = await query<RoundRow>(federation, 'SELECT * FROM rounds ORDER BY number');
      expect(rows.map((r) => r.state)).toEqual(Array(rounds).fill('done'));
      const updates = await query<{ round: number; site: string }>(federation, 'SELECT round, site FROM updates ORDER BY round, site');
      expect(updates.filter((u) => u.round === killedIn).map((u) => u.site)).toEqual(['site-01', 'site-02']);
      // The restarted agent joined again by itself and trained in the next round.
      const next = rows[killedIn];
      expect(JSON.parse(next.participants)).toEqual(['site-01', 'site-02', 'site-03']);
      expect(JSON.parse(next.left_out)).toEqual([]);
      expect(updates.filter((u) => u.round === killedIn + 1).map((u) => u.site)).toEqual(['site-01', 'site-02', 'site-03']);
      expect(inProcess.every((agent) => agent.acknowledged.length >= rounds - 1)).toBe(true);
    });
  });
});
