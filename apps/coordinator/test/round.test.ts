import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  HISTOGRAM_BINS,
  decodeWeights,
  describePayload,
  encodeWeights,
  sha256Hex,
  type MetricsReport,
  type NamedTensor,
  type SiteMetrics,
  type TrainTask,
  type EvaluateTask,
} from '@covnet/protocol';
import { FakeAgent } from './support/fake-agent';
import { INITIAL_META, TOKENS, getJson, initialTensors, queryDatabase, startFixture, type Fixture } from './support/fixtures';

// Updates of the two sites. Site A trained on 1 exam, site B on 3, so FedAvg
// is (1*a + 3*b) / 4; every value and every partial sum is exact in float32.
const UPDATE_A: NamedTensor[] = [
  { name: 'dense/kernel', shape: [2, 3], data: new Float32Array([1, 2, -4, 0.5, 8, 3]) },
  { name: 'dense/bias', shape: [3], data: new Float32Array([0, 1, 2]) },
  { name: 'bn/moving_mean', shape: [3], data: new Float32Array([0.25, 0, 1]) },
];
const UPDATE_B: NamedTensor[] = [
  // Same tensors in another order: layouts match by name, not position.
  { name: 'bn/moving_mean', shape: [3], data: new Float32Array([0.25, 4, 1]) },
  { name: 'dense/bias', shape: [3], data: new Float32Array([4, 1, -2]) },
  { name: 'dense/kernel', shape: [2, 3], data: new Float32Array([5, 2, 0, 0.5, -8, 7]) },
];
// By hand: kernel (1+15)/4, (2+6)/4, (-4+0)/4, (0.5+1.5)/4, (8-24)/4, (3+21)/4;
// bias (0+12)/4, (1+3)/4, (2-6)/4; moving mean (0.25+0.75)/4, (0+12)/4, (1+3)/4.
const EXPECTED_V1: NamedTensor[] = [
  { name: 'dense/kernel', shape: [2, 3], data: new Float32Array([4, 2, -1, 0.5, -4, 6]) },
  { name: 'dense/bias', shape: [3], data: new Float32Array([3, 1, -1]) },
  { name: 'bn/moving_mean', shape: [3], data: new Float32Array([0.25, 3, 1]) },
];

function histogram(entries: Record<number, number> = {}): number[] {
  const bins = new Array<number>(HISTOGRAM_BINS).fill(0);
  for (const [bin, count] of Object.entries(entries)) bins[Number(bin)] = count;
  return bins;
}

// Site A: covid19 positives 2 in bin 150; negatives 1 in bin 50, 1 in bin 150.
// Site B: covid19 positive 1 in bin 100; negative 1 in bin 120.
// Every CAP positive scores above every CAP negative, and no site has a
// non-pneumonia exam, so pooled CAP AUC is 1 and non-pneumonia AUC undefined.
// Histogram totals match valExams and the confusion rows, as the protocol requires.
const METRICS_A: SiteMetrics = {
  valExams: 4,
  loss: 0.75,
  auc: { covid19: 0.75, cap: 1, non_pneumonia: null },
  confusion: [[2, 0, 0], [1, 1, 0], [0, 0, 0]],
  histograms: {
    covid19: { positive: histogram({ 150: 2 }), negative: histogram({ 50: 1, 150: 1 }) },
    cap: { positive: histogram({ 10: 2 }), negative: histogram({ 5: 2 }) },
    non_pneumonia: { positive: histogram(), negative: histogram({ 3: 4 }) },
  },
};
const METRICS_B: SiteMetrics = {
  valExams: 2,
  loss: 1.25,
  auc: { covid19: 0, cap: null, non_pneumonia: null },
  confusion: [[0, 1, 0], [0, 1, 0], [0, 0, 0]],
  histograms: {
    covid19: { positive: histogram({ 100: 1 }), negative: histogram({ 120: 1 }) },
    cap: { positive: histogram({ 20: 1 }), negative: histogram({ 5: 1 }) },
    non_pneumonia: { positive: histogram(), negative: histogram({ 3: 2 }) },
  },
};

describe('round', () => {
  let fixture: Fixture | null = null;
  const agents: FakeAgent[] = [];

  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.close();
    await fixture?.cleanup();
    fixture = null;
  });

  async function joinSites(f: Fixture): Promise<[FakeAgent, FakeAgent]> {
    const a = FakeAgent.forToken(f.baseUrl, TOKENS['site-a']);
    const b = FakeAgent.forToken(f.baseUrl, TOKENS['site-b']);
    agents.push(a, b);
    await a.connect();
    await b.connect();
    expect((await a.hello()).ok).toBe(true);
    expect((await b.hello()).ok).toBe(true);
    return [a, b];
  }

  describe('when two sites train and evaluate', () => {
    it('writes the FedAvg checkpoint and serves metrics', async () => {
      fixture = await startFixture({ rounds: 1, minSites: 2 });
      const [a, b] = await joinSites(fixture);

      const taskA = await a.next<TrainTask>('round:train');
      const taskB = await b.next<TrainTask>('round:train');
      expect(taskA.round).toBe(1);
      expect(taskA.modelVersion).toBe(0);
      expect(taskA.hyper).toEqual({ epochs: 2, learningRate: 0.01, batchSize: 2, proximalMu: 0 });
      expect(taskA.model.sha256).toBe(sha256Hex(fixture.initialPayload));
      expect(taskA.model.chunkCount).toBeGreaterThan(1);
      expect(await a.pullModel(0, taskA.model)).toEqual(fixture.initialPayload);
      expect(await b.pullModel(0, taskB.model)).toEqual(fixture.initialPayload);

      const commitA = await a.upload(1, 0, 1, encodeWeights(UPDATE_A));
      expect(commitA).toEqual({ ok: true, accepted: true });
      // float16 on the wire: every value above is exact in half precision too.
      const commitB = await b.upload(1, 0, 3, encodeWeights(UPDATE_B, 'float16'));
      expect(commitB).toEqual({ ok: true, accepted: true });

      const evalA = await a.next<EvaluateTask>('round:evaluate');
      const evalB = await b.next<EvaluateTask>('round:evaluate');
      expect(evalA.modelVersion).toBe(1);
      expect(evalB.modelVersion).toBe(1);

      const expectedPayload = encodeWeights(EXPECTED_V1, 'float32', INITIAL_META);
      const checkpoint = await readFile(join(fixture.dataDir, 'checkpoints', 'model-v1.cvnw'));
      expect(checkpoint.equals(expectedPayload)).toBe(true);
      expect(evalA.model.sha256).toBe(sha256Hex(expectedPayload));
      expect(await a.pullModel(1, evalA.model)).toEqual(expectedPayload);
      const decoded = decodeWeights(checkpoint);
      expect(Array.from(decoded.tensors[0].data)).toEqual([4, 2, -1, 0.5, -4, 6]);
      expect(decoded.meta).toEqual(INITIAL_META);

      const reportA: MetricsReport = { round: 1, modelVersion: 1, trainExams: 1, metrics: METRICS_A };
      const reportB: MetricsReport = { round: 1, modelVersion: 1, trainExams: 3, metrics: METRICS_B };
      expect(await a.request('metrics:report', reportA)).toEqual({ ok: true });
      expect(await b.request('metrics:report', reportB)).toEqual({ ok: true });

      const summary = await fixture.coordinator.done;
      expect(summary).toEqual({ experiment: 'test', rounds: 1, finalModelVersion: 1, finalSha256: sha256Hex(expectedPayload) });
      expect(await a.next('federation:done')).toEqual({ experiment: 'test', rounds: 1, finalModelVersion: 1 });

      const [version1] = await queryDatabase<{ sha256: string; byte_length: number }>(
        fixture,
        "SELECT sha256, byte_length FROM model_versions WHERE experiment = 'test' AND version = 1",
      );
      expect(version1).toEqual({ sha256: sha256Hex(expectedPayload), byte_length: expectedPayload.byteLength });
      const updates = await queryDatabase(fixture!, 'SELECT site, num_examples FROM updates WHERE round = 1 ORDER BY site');
      expect(updates).toEqual([
        { site: 'site-a', num_examples: 1 },
        { site: 'site-b', num_examples: 3 },
      ]);

      const rounds = await getJson(`${fixture.baseUrl}/api/rounds`);
      expect(rounds.status).toBe(200);
      expect(rounds.body).toHaveLength(1);
      expect(rounds.body[0]).toMatchObject({
        round: 1,
        state: 'done',
        modelVersionIn: 0,
        modelVersionOut: 1,
        participants: ['site-a', 'site-b'],
        leftOut: [],
      });

      const metrics = await getJson(`${fixture.baseUrl}/api/rounds/1/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.body.modelVersion).toBe(1);
      expect(metrics.body.sites).toEqual([
        { site: 'site-a', trainExams: 1, valExams: 4, auc: { covid19: 0.75, cap: 1, non_pneumonia: null }, loss: 0.75, confusion: METRICS_A.confusion },
        { site: 'site-b', trainExams: 3, valExams: 2, auc: { covid19: 0, cap: null, non_pneumonia: null }, loss: 1.25, confusion: METRICS_B.confusion },
      ]);
      // Pooled covid19: positives at bins 100, 150, 150; negatives at 50, 120, 150.
      // The positive at 100 beats 1 negative; each at 150 beats 2 and ties 1: (1 + 2.5 + 2.5) / 9.
      expect(metrics.body.pooled.valExams).toBe(6);
      expect(metrics.body.pooled.auc.covid19).toBeCloseTo(6 / 9, 12);
      expect(metrics.body.pooled.auc.cap).toBe(1);
      expect(metrics.body.pooled.auc.non_pneumonia).toBeNull();
      // Hanley-McNeil by hand for A = 2/3, 3 positives, 3 negatives: Q1 = 1/2,
      // Q2 = 8/15, SE^2 = (2/9 + 2(1/2 - 4/9) + 2(8/15 - 4/9)) / 9 = 23/405.
      expect(metrics.body.pooled.interval.covid19.low).toBeCloseTo(2 / 3 - 1.959964 * Math.sqrt(23 / 405), 5);
      expect(metrics.body.pooled.interval.covid19.high).toBe(1);
      expect(metrics.body.pooled.interval.non_pneumonia).toEqual({ low: null, high: null });

      const sites = await getJson(`${fixture.baseUrl}/api/sites`);
      expect(sites.body.map((s: { name: string; online: boolean }) => [s.name, s.online])).toEqual([
        ['site-a', true],
        ['site-b', true],
        ['site-c', false],
      ]);
      expect(sites.body[0]).toMatchObject({ backend: 'cpu', agentVersion: '0.0.0-test', trainExams: { covid19: 1, cap: 1, non_pneumonia: 1 } });

      const models = await getJson(`${fixture.baseUrl}/api/models`);
      expect(models.body.map((m: { version: number; sha256: string }) => [m.version, m.sha256])).toEqual([
        [0, sha256Hex(fixture.initialPayload)],
        [1, sha256Hex(expectedPayload)],
      ]);
    });
  });

  describe('when an update chunk acknowledgement is lost', () => {
    it('resumes the upload from nextIndex', async () => {
      fixture = await startFixture({ rounds: 1, minSites: 2 });
      const [a] = await joinSites(fixture);
      await a.next<TrainTask>('round:train');

      const payload = encodeWeights(UPDATE_A);
      const ref = describePayload(payload, 40);
      expect(ref.chunkCount).toBeGreaterThan(3);
      const begun = await a.begin(1, 0, 1, payload, 40);
      if (!begun.ok) throw new Error(begun.error.message);
      expect(begun.nextIndex).toBe(0);

      expect(await a.sendChunk(begun.uploadId, payload, ref, 0)).toEqual({ ok: true, nextIndex: 1 });
      expect(await a.sendChunk(begun.uploadId, payload, ref, 1)).toEqual({ ok: true, nextIndex: 2 });
      // The agent never saw the ack of chunk 1 and sends it again.
      expect(await a.sendChunk(begun.uploadId, payload, ref, 1)).toEqual({ ok: true, nextIndex: 2 });
      const skipped = await a.sendChunk(begun.uploadId, payload, ref, 3);
      expect(skipped.ok).toBe(false);
      if (!skipped.ok) expect(skipped.error.code).toBe('chunk_out_of_order');

      for (let index = 2; index < ref.chunkCount; index++) {
        expect(await a.sendChunk(begun.uploadId, payload, ref, index)).toEqual({ ok: true, nextIndex: index + 1 });
      }
      expect(await a.request('update:commit', { uploadId: begun.uploadId })).toEqual({ ok: true, accepted: true });
      // The same update again is acknowledged as a duplicate, and nothing more is sent.
      const again = await a.begin(1, 0, 1, payload, 40);
      expect(again).toEqual({ ok: true, uploadId: '', nextIndex: ref.chunkCount, duplicate: true });
      // Another update for the same round and site conflicts with the accepted one.
      const other = await a.upload(1, 0, 1, encodeWeights(UPDATE_B));
      expect(other.ok).toBe(false);
      if (!other.ok) expect(other.error.code).toBe('conflicting_update');
    });
  });

  describe('when the connection drops mid-upload', () => {
    it('resumes the upload after reconnecting', async () => {
      fixture = await startFixture({ rounds: 1, minSites: 2 });
      const [a] = await joinSites(fixture);
      await a.next<TrainTask>('round:train');
      const payload = encodeWeights(UPDATE_A);
      const ref = describePayload(payload, 40);
      const begun = await a.begin(1, 0, 1, payload, 40);
      if (!begun.ok) throw new Error(begun.error.message);
      expect(await a.sendChunk(begun.uploadId, payload, ref, 0)).toEqual({ ok: true, nextIndex: 1 });
      a.close();

      const again = FakeAgent.forToken(fixture.baseUrl, TOKENS['site-a']);
      agents.push(again);
      await again.connect();
      expect((await again.hello()).ok).toBe(true);
      // The agent announces the same update again and learns where to resume.
      expect(await again.begin(1, 0, 1, payload, 40)).toEqual({ ok: true, uploadId: begun.uploadId, nextIndex: 1 });
      for (let index = 1; index < ref.chunkCount; index++) {
        expect(await again.sendChunk(begun.uploadId, payload, ref, index)).toEqual({ ok: true, nextIndex: index + 1 });
      }
      expect(await again.request('update:commit', { uploadId: begun.uploadId })).toEqual({ ok: true, accepted: true });
    });
  });

  describe('when an update is corrupted in transit', () => {
    it('rejects it with checksum_mismatch', async () => {
      fixture = await startFixture({ rounds: 1, minSites: 2 });
      const [a] = await joinSites(fixture);
      await a.next<TrainTask>('round:train');

      const payload = encodeWeights(UPDATE_A);
      const ref = describePayload(payload, 40);
      const corrupted = Buffer.from(payload);
      corrupted[corrupted.length - 1] ^= 0x01;
      const begun = await a.begin(1, 0, 1, corrupted, 40, ref);
      if (!begun.ok) throw new Error(begun.error.message);
      for (let index = 0; index < ref.chunkCount; index++) {
        expect((await a.sendChunk(begun.uploadId, corrupted, ref, index)).ok).toBe(true);
      }
      const commit = await a.request('update:commit', { uploadId: begun.uploadId });
      expect(commit.ok).toBe(false);
      if (!commit.ok) expect(commit.error.code).toBe('checksum_mismatch');

      // The rejected upload is gone, and a clean one is still accepted.
      const stale = await a.request('update:commit', { uploadId: begun.uploadId });
      expect(stale.ok).toBe(false);
      if (!stale.ok) expect(stale.error.code).toBe('unknown_upload');
      expect(await a.upload(1, 0, 1, payload)).toEqual({ ok: true, accepted: true });
    });
  });
  describe('when a participant misses the deadline', () => {
    it('keeps the round open until a quorum of updates', async () => {
      fixture = await startFixture({ rounds: 1, minSites: 2, roundTimeoutS: 0.3 });
      const [a, b] = await joinSites(fixture);
      await a.next<TrainTask>('round:train');
      await b.next<TrainTask>('round:train');
      expect(await a.upload(1, 0, 1, encodeWeights(UPDATE_A))).toEqual({ ok: true, accepted: true });
      b.close();

      // Past the deadline with 1 of 2 updates, the round stays in training and records who is missing.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const stalled = await getJson(`${fixture.baseUrl}/api/rounds`);
      expect(stalled.body[0].state).toBe('training');
      expect(stalled.body[0].leftOut).toEqual([{ site: 'site-b', reason: 'disconnected' }]);

      // site-b comes back, receives its task again and completes the round.
      const b2 = FakeAgent.forToken(fixture.baseUrl, TOKENS['site-b']);
      agents.push(b2);
      await b2.connect();
      await b2.hello();
      const resent = await b2.next<TrainTask>('round:train');
      expect(resent.round).toBe(1);
      expect(await b2.upload(1, 0, 3, encodeWeights(UPDATE_B))).toEqual({ ok: true, accepted: true });

      // No site reports metrics, so evaluation ends at its deadline.
      const summary = await fixture.coordinator.done;
      expect(summary.finalModelVersion).toBe(1);
      const checkpoint = await readFile(join(fixture.dataDir, 'checkpoints', 'model-v1.cvnw'));
      expect(checkpoint.equals(encodeWeights(EXPECTED_V1, 'float32', INITIAL_META))).toBe(true);
      const rounds = await getJson(`${fixture.baseUrl}/api/rounds`);
      expect(rounds.body[0]).toMatchObject({ state: 'done', leftOut: [], participants: ['site-a', 'site-b'] });
      const metrics = await getJson(`${fixture.baseUrl}/api/rounds/1/metrics`);
      expect(metrics.body).toEqual({ round: 1, modelVersion: 1, sites: [], pooled: {
          valExams: 0,
          auc: { covid19: null, cap: null, non_pneumonia: null },
          interval: { covid19: { low: null, high: null }, cap: { low: null, high: null }, non_pneumonia: { low: null, high: null } },
        },
      });
    });
  });

  describe('when the deadline passes at quorum', () => {
    it('closes the round without the missing site', async () => {
      fixture = await startFixture({ rounds: 2, minSites: 1, roundTimeoutS: 0.3 });
      // Round 1 runs with site-a alone; site-b joins in time to be a participant of round 2.
      const a = FakeAgent.forToken(fixture.baseUrl, TOKENS['site-a']);
      agents.push(a);
      await a.connect();
      await a.hello();
      await a.next<TrainTask>('round:train');
      const b = FakeAgent.forToken(fixture.baseUrl, TOKENS['site-b']);
      agents.push(b);
      await b.connect();
      await b.hello();
      expect(await a.upload(1, 0, 1, encodeWeights(UPDATE_A))).toEqual({ ok: true, accepted: true });
      const evaluate = await a.next<EvaluateTask>('round:evaluate');
      await b.next<EvaluateTask>('round:evaluate');
      expect(await a.request('metrics:report', { round: 1, modelVersion: evaluate.modelVersion, trainExams: 1, metrics: METRICS_A })).toEqual({ ok: true });
      expect(await b.request('metrics:report', { round: 1, modelVersion: evaluate.modelVersion, trainExams: 3, metrics: METRICS_B })).toEqual({ ok: true });

      const task2 = await a.next<TrainTask>('round:train');
      await b.next<TrainTask>('round:train');
      expect(task2).toMatchObject({ round: 2, modelVersion: 1 });
      expect(await a.upload(2, 1, 1, encodeWeights(UPDATE_B))).toEqual({ ok: true, accepted: true });

      const summary = await fixture.coordinator.done;
      expect(summary.finalModelVersion).toBe(2);
      const rounds = await getJson(`${fixture.baseUrl}/api/rounds`);
      expect(rounds.body[0]).toMatchObject({ round: 1, participants: ['site-a'], leftOut: [] });
      expect(rounds.body[1]).toMatchObject({
        round: 2,
        modelVersionIn: 1,
        modelVersionOut: 2,
        participants: ['site-a', 'site-b'],
        leftOut: [{ site: 'site-b', reason: 'missed_deadline' }],
      });
      // Version 2 is site-a's update alone, since it was the only one accepted.
      const checkpoint = await readFile(join(fixture.dataDir, 'checkpoints', 'model-v2.cvnw'));
      expect(checkpoint.equals(encodeWeights(initialTensors().map((t) => UPDATE_B.find((u) => u.name === t.name)!), 'float32', INITIAL_META))).toBe(true);
    });
  });
});
