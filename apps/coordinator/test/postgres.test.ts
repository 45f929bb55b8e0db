import { randomBytes } from 'node:crypto';
import { Socket as TcpSocket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { encodeWeights, sha256Hex, type EvaluateTask, type NamedTensor, type TrainTask } from '@covnet/protocol';
import { FakeAgent } from './support/fake-agent';
import { INITIAL_META, TOKENS, getJson, startFixture, type Fixture } from './support/fixtures';

// PostgreSQL 15 on 127.0.0.1:5432 with trust authentication and a database
// named "test"; the suite is skipped where none listens.
const SERVER_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function postgresListens(): Promise<boolean> {
  const { hostname, port } = new URL(SERVER_URL);
  return new Promise((resolve) => {
    const socket = new TcpSocket();
    socket.setTimeout(500);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.connect(Number(port || 5432), hostname);
  });
}

describe('coordinator on PostgreSQL', () => {
  // Each run gets its own schema, so runs never see each other's rows.
  const schema = `coordinator_test_${randomBytes(6).toString('hex')}`;
  const admin = new DataSource({ type: 'postgres', url: SERVER_URL });
  let available = false;
  let fixture: Fixture | null = null;
  const agents: FakeAgent[] = [];

  beforeAll(async () => {
    available = await postgresListens();
    if (!available) return;
    await admin.initialize();
    await admin.query(`CREATE SCHEMA ${schema}`);
  });

  afterAll(async () => {
    for (const agent of agents) agent.close();
    await fixture?.cleanup();
    if (!admin.isInitialized) return;
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.destroy();
  });

  describe('when two sites complete a round', () => {
    it('stores the round, the version and the metrics', async ({ skip }) => {
      if (!available) skip();
      const url = new URL(SERVER_URL);
      url.searchParams.set('options', `-c search_path=${schema}`);
      fixture = await startFixture({ rounds: 1, minSites: 2, env: { DATABASE_URL: url.toString() } });
      const a = FakeAgent.forToken(fixture.baseUrl, TOKENS['site-a']);
      const b = FakeAgent.forToken(fixture.baseUrl, TOKENS['site-b']);
      agents.push(a, b);
      await a.connect();
      await b.connect();
      await a.hello();
      await b.hello();
      await a.next<TrainTask>('round:train');
      await b.next<TrainTask>('round:train');

      // Weights 2 and 2: the mean of 1 and 3 is 2, of -0.5 and 0.5 is 0.
      const update = (values: number[]): NamedTensor[] => [
        { name: 'dense/kernel', shape: [2, 3], data: new Float32Array(values) },
        { name: 'dense/bias', shape: [3], data: new Float32Array([values[0], values[0], values[0]]) },
        { name: 'bn/moving_mean', shape: [3], data: new Float32Array([values[1], values[1], values[1]]) },
      ];
      expect(await a.upload(1, 0, 2, encodeWeights(update([1, -0.5, 1, 1, 1, 1])))).toEqual({ ok: true, accepted: true });
      expect(await b.upload(1, 0, 2, encodeWeights(update([3, 0.5, 3, 3, 3, 3])))).toEqual({ ok: true, accepted: true });
      const expected = encodeWeights(update([2, 0, 2, 2, 2, 2]), 'float32', INITIAL_META);

      const evaluate = await a.next<EvaluateTask>('round:evaluate');
      expect(evaluate.model.sha256).toBe(sha256Hex(expected));
      await b.next<EvaluateTask>('round:evaluate');
      const histogram = (bin: number) => Array.from({ length: 200 }, (_, i) => (i === bin ? 1 : 0));
      const report = (positiveBin: number, negativeBin: number) => ({
        round: 1,
        modelVersion: 1,
        trainExams: 2,
        metrics: {
          valExams: 2,
          loss: 0.5,
          auc: { covid19: positiveBin > negativeBin ? 1 : 0, cap: null, non_pneumonia: null },
          confusion: [[1, 0, 0], [0, 0, 0], [0, 0, 1]],
          histograms: {
            covid19: { positive: histogram(positiveBin), negative: histogram(negativeBin) },
            cap: { positive: histogram(-1), negative: histogram(-1) },
            non_pneumonia: { positive: histogram(-1), negative: histogram(-1) },
          },
        },
      });
      expect(await a.request('metrics:report', report(180, 20))).toEqual({ ok: true });
      expect(await b.request('metrics:report', report(10, 100))).toEqual({ ok: true });
      await fixture.coordinator.done;

      const rows = await admin.query(`SELECT sha256 FROM ${schema}.model_versions WHERE version = 1`);
      expect(rows).toEqual([{ sha256: sha256Hex(expected) }]);
      const metrics = await getJson(`${fixture.baseUrl}/api/rounds/1/metrics`);
      expect(metrics.body.sites.map((s: { auc: { covid19: number } }) => s.auc.covid19)).toEqual([1, 0]);
      // Positives at bins 180 and 10, negatives at 20 and 100: 180 beats both, 10 beats neither, so 2/4.
      expect(metrics.body.pooled.auc.covid19).toBe(0.5);
      expect(metrics.body.pooled.valExams).toBe(4);
    });
  });
});
