import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  HISTOGRAM_BINS,
  decodeWeights,
  encodeWeights,
  sha256Hex,
  type EvaluateTask,
  type FederationDone,
  type NamedTensor,
  type SiteMetrics,
  type TrainTask,
} from '@covnet/protocol';
import { FakeAgent } from './support/fake-agent';
import { TOKENS, getJson, queryDatabase, startFixture, type Fixture } from './support/fixtures';

// Two experiments with different layouts and metadata, so that a model or an
// update routed to the wrong experiment fails the layout check or the checksum.
const ALPHA_META = { backbone: 'tiny-alpha' };
const BETA_META = { backbone: 'tiny-beta' };
const ALPHA_V0: NamedTensor[] = [{ name: 'alpha/w', shape: [2], data: new Float32Array([0, 0]) }];
const BETA_V0: NamedTensor[] = [
  { name: 'beta/kernel', shape: [3], data: new Float32Array([1, 1, 1]) },
  { name: 'beta/bias', shape: [1], data: new Float32Array([0]) },
];

const CONSORTIUM = `
experiments:
  - name: alpha
    rounds: 1
    minSites: 2
    initialModel: alpha.cvnw
  - name: beta
    rounds: 2
    minSites: 2
    initialModel: beta.cvnw
`;

function histogram(entries: Record<number, number> = {}): number[] {
  const bins = new Array<number>(HISTOGRAM_BINS).fill(0);
  for (const [bin, count] of Object.entries(entries)) bins[Number(bin)] = count;
  return bins;
}

/**
 * Metrics of two validation exams, one COVID-19 and one CAP. With
 * `separates` each positive scores above its negative (AUC 1), otherwise below (AUC 0).
 */
function metrics(separates: boolean): SiteMetrics {
  const [high, low] = separates ? [190, 10] : [10, 190];
  return {
    valExams: 2,
    loss: separates ? 0.25 : 2,
    auc: { covid19: separates ? 1 : 0, cap: separates ? 1 : 0, non_pneumonia: null },
    confusion: [[1, 0, 0], [0, 1, 0], [0, 0, 0]],
    histograms: {
      covid19: { positive: histogram({ [high]: 1 }), negative: histogram({ [low]: 1 }) },
      cap: { positive: histogram({ [high]: 1 }), negative: histogram({ [low]: 1 }) },
      non_pneumonia: { positive: histogram(), negative: histogram({ 3: 2 }) },
    },
  };
}

/** Returns the next `count` tasks of `event` that `agent` receives, by experiment. */
async function tasksByExperiment<T extends { experiment: string }>(agent: FakeAgent, event: string, count: number): Promise<Map<string, T>> {
  const tasks = new Map<string, T>();
  for (let i = 0; i < count; i++) {
    const task = await agent.next<T>(event);
    tasks.set(task.experiment, task);
  }
  return tasks;
}

describe('coordinator with two experiments', () => {
  let fixture: Fixture | null = null;
  const agents: FakeAgent[] = [];

  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.close();
    await fixture?.cleanup();
    fixture = null;
  });

  it('runs both with their own lineage', async () => {
    const alphaV0 = encodeWeights(ALPHA_V0, 'float32', ALPHA_META);
    const betaV0 = encodeWeights(BETA_V0, 'float32', BETA_META);
    // The consortium file names the initial models relative to its own folder, the data dir.
    fixture = await startFixture({
      consortiumYaml: CONSORTIUM,
      allExperiments: true,
      beforeStart: async (dataDir) => {
        await writeFile(join(dataDir, 'alpha.cvnw'), alphaV0);
        await writeFile(join(dataDir, 'beta.cvnw'), betaV0);
      },
    });
    const url = fixture.baseUrl;
    const a = FakeAgent.forToken(url, TOKENS['site-a']);
    const b = FakeAgent.forToken(url, TOKENS['site-b']);
    agents.push(a, b);
    for (const agent of [a, b]) {
      await agent.connect();
      expect(await agent.hello()).toMatchObject({ ok: true, experiment: 'alpha' });
    }

    // Round 1 of both experiments trains at once; each task names its experiment.
    const trainA = await tasksByExperiment<TrainTask>(a, 'round:train', 2);
    const trainB = await tasksByExperiment<TrainTask>(b, 'round:train', 2);
    expect([...trainA.keys()].sort()).toEqual(['alpha', 'beta']);
    expect(trainA.get('alpha')!.model.sha256).toBe(sha256Hex(alphaV0));
    expect(trainA.get('beta')!.model.sha256).toBe(sha256Hex(betaV0));
    expect(await a.pullModel(0, trainA.get('alpha')!.model, 'alpha')).toEqual(alphaV0);
    expect(await a.pullModel(0, trainA.get('beta')!.model, 'beta')).toEqual(betaV0);
    // A request without experiment gets the first experiment's model, as an older agent expects.
    expect(await b.pullModel(0, trainB.get('alpha')!.model)).toEqual(alphaV0);
    const unknown = await a.request('model:chunk', { experiment: 'gamma', version: 0, index: 0 });
    expect(unknown).toMatchObject({ ok: false, error: { code: 'invalid_message' } });

    // An update with another experiment's layout is rejected by that experiment.
    const misrouted = await a.upload(1, 0, 1, encodeWeights(ALPHA_V0), 40, 'beta');
    expect(misrouted).toMatchObject({ ok: false, error: { code: 'weights_mismatch' } });

    // alpha: site A 1 exam, site B 3 exams: w = ((1, 2) * 1 + (5, 6) * 3) / 4 = (4, 5).
    // beta: one exam each: kernel ((2, 0, 4) + (2, 4, 0)) / 2 = (2, 2, 2), bias (8 + 0) / 2 = 4.
    // An update without experiment goes to alpha, the first experiment.
    expect(await a.upload(1, 0, 1, encodeWeights([{ name: 'alpha/w', shape: [2], data: new Float32Array([1, 2]) }]))).toEqual({ ok: true, accepted: true });
    expect(
      await a.upload(1, 0, 1, encodeWeights([
        { name: 'beta/kernel', shape: [3], data: new Float32Array([2, 0, 4]) },
        { name: 'beta/bias', shape: [1], data: new Float32Array([8]) },
      ]), 40, 'beta'),
    ).toEqual({ ok: true, accepted: true });
    expect(await b.upload(1, 0, 3, encodeWeights([{ name: 'alpha/w', shape: [2], data: new Float32Array([5, 6]) }]), 40, 'alpha')).toEqual({ ok: true, accepted: true });
    expect(
      await b.upload(1, 0, 1, encodeWeights([
        { name: 'beta/kernel', shape: [3], data: new Float32Array([2, 4, 0]) },
        { name: 'beta/bias', shape: [1], data: new Float32Array([0]) },
      ]), 40, 'beta'),
    ).toEqual({ ok: true, accepted: true });

    const alphaV1 = encodeWeights([{ name: 'alpha/w', shape: [2], data: new Float32Array([4, 5]) }], 'float32', ALPHA_META);
    const betaV1 = encodeWeights(
      [
        { name: 'beta/kernel', shape: [3], data: new Float32Array([2, 2, 2]) },
        { name: 'beta/bias', shape: [1], data: new Float32Array([4]) },
      ],
      'float32',
      BETA_META,
    );
    const evalA = await tasksByExperiment<EvaluateTask>(a, 'round:evaluate', 2);
    const evalB = await tasksByExperiment<EvaluateTask>(b, 'round:evaluate', 2);
    expect(evalA.get('alpha')!.model.sha256).toBe(sha256Hex(alphaV1));
    expect(evalA.get('beta')!.model.sha256).toBe(sha256Hex(betaV1));
    expect((await readFile(join(fixture.dataDir, 'checkpoints', 'alpha', 'model-v1.cvnw'))).equals(alphaV1)).toBe(true);
    expect((await readFile(join(fixture.dataDir, 'checkpoints', 'beta', 'model-v1.cvnw'))).equals(betaV1)).toBe(true);
    expect(await a.pullModel(1, evalA.get('beta')!.model, 'beta')).toEqual(betaV1);

    // alpha's models separate the classes, beta's do not.
    for (const [agent, tasks] of [[a, evalA], [b, evalB]] as const) {
      for (const [experiment, separates] of [['alpha', true], ['beta', false]] as const) {
        const report = { experiment, round: 1, modelVersion: 1, trainExams: 1, metrics: metrics(separates) };
        expect(tasks.get(experiment)!.modelVersion).toBe(1);
        expect(await agent.request('metrics:report', report)).toEqual({ ok: true });
      }
    }

    // alpha is done after one round; beta's round 2 trains from beta's version 1.
    const round2A = await a.next<TrainTask>('round:train');
    const round2B = await b.next<TrainTask>('round:train');
    expect(round2A).toMatchObject({ experiment: 'beta', round: 2, modelVersion: 1 });
    expect(round2B).toMatchObject({ experiment: 'beta', round: 2, modelVersion: 1 });
    const betaUpdate = (bias: number) =>
      encodeWeights([
        { name: 'beta/kernel', shape: [3], data: new Float32Array([0, 0, 0]) },
        { name: 'beta/bias', shape: [1], data: new Float32Array([bias]) },
      ]);
    // Weights 1 and 3: bias (2 * 1 + 6 * 3) / 4 = 5.
    expect(await a.upload(2, 1, 1, betaUpdate(2), 40, 'beta')).toEqual({ ok: true, accepted: true });
    expect(await b.upload(2, 1, 3, betaUpdate(6), 40, 'beta')).toEqual({ ok: true, accepted: true });
    const betaV2 = encodeWeights(
      [
        { name: 'beta/kernel', shape: [3], data: new Float32Array([0, 0, 0]) },
        { name: 'beta/bias', shape: [1], data: new Float32Array([5]) },
      ],
      'float32',
      BETA_META,
    );
    for (const agent of [a, b]) {
      const task = await agent.next<EvaluateTask>('round:evaluate');
      expect(task).toMatchObject({ experiment: 'beta', round: 2, modelVersion: 2 });
      expect(task.model.sha256).toBe(sha256Hex(betaV2));
      const report = { experiment: 'beta', round: 2, modelVersion: 2, trainExams: 1, metrics: metrics(true) };
      expect(await agent.request('metrics:report', report)).toEqual({ ok: true });
    }

    // federation:done goes out once, after the last experiment finishes.
    const done = await a.next<FederationDone>('federation:done');
    expect(done).toMatchObject({ experiment: 'beta', rounds: 2, finalModelVersion: 2 });
    const summaries = await fixture.coordinator.summaries;
    expect(summaries.map((s) => [s.experiment, s.rounds, s.finalModelVersion, s.finalSha256])).toEqual([
      ['alpha', 1, 1, sha256Hex(alphaV1)],
      ['beta', 2, 2, sha256Hex(betaV2)],
    ]);
    await expect(a.next('federation:done', 200)).rejects.toThrow('no federation:done');
    const checkpointV2 = await readFile(join(fixture.dataDir, 'checkpoints', 'beta', 'model-v2.cvnw'));
    expect(Array.from(decodeWeights(checkpointV2).tensors[1].data)).toEqual([5]);

    // REST reads are per experiment; without ?experiment= they read the first.
    const alphaRounds = await getJson(`${url}/api/rounds?experiment=alpha`);
    const betaRounds = await getJson(`${url}/api/rounds?experiment=beta`);
    expect(alphaRounds.body.map((r: { round: number; state: string }) => `${r.round}:${r.state}`)).toEqual(['1:done']);
    expect(betaRounds.body.map((r: { round: number; state: string }) => `${r.round}:${r.state}`)).toEqual(['1:done', '2:done']);
    expect((await getJson(`${url}/api/rounds`)).body).toEqual(alphaRounds.body);

    const alphaMetrics = await getJson(`${url}/api/rounds/1/metrics?experiment=alpha`);
    const betaMetrics = await getJson(`${url}/api/rounds/1/metrics?experiment=beta`);
    expect(alphaMetrics.body.pooled.auc.covid19).toBe(1);
    expect(betaMetrics.body.pooled.auc.covid19).toBe(0);
    expect(betaMetrics.body.sites.map((s: { site: string }) => s.site)).toEqual(['site-a', 'site-b']);

    const betaModels = await getJson(`${url}/api/models?experiment=beta`);
    expect(betaModels.body.map((m: { version: number; sha256: string }) => [m.version, m.sha256])).toEqual([
      [0, sha256Hex(betaV0)],
      [1, sha256Hex(betaV1)],
      [2, sha256Hex(betaV2)],
    ]);
    expect(betaModels.body[2].downloadUrl).toBe('/api/models/2/download?experiment=beta');
    // Best model by pooled validation AUC: beta's version 2 beats its version 1.
    expect((await getJson(`${url}/api/models/best?experiment=beta`)).body).toMatchObject({ modelVersion: 2, meanPooledAuc: 1 });
    expect((await getJson(`${url}/api/models/best?experiment=alpha`)).body).toMatchObject({ modelVersion: 1, meanPooledAuc: 1 });
    const download = await fetch(`${url}/api/models/1/download?experiment=beta`, { headers: { authorization: 'Bearer admin-token-of-the-tests-0123' } });
    expect(Buffer.from(await download.arrayBuffer()).equals(betaV1)).toBe(true);
    expect((await getJson(`${url}/api/overview`)).body).toMatchObject({ experiment: 'alpha', experiments: ['alpha', 'beta'], roundsDone: 1, state: 'done' });
    expect((await getJson(`${url}/api/overview?experiment=beta`)).body).toMatchObject({ experiment: 'beta', roundsDone: 2, latestModelVersion: 2 });
    expect((await getJson(`${url}/api/metrics/auc?experiment=beta`)).body.rounds).toEqual([1, 2]);
    expect((await getJson(`${url}/api/rounds?experiment=gamma`)).status).toBe(404);

    const rows = await queryDatabase<{ experiment: string; number: number }>(fixture, 'SELECT experiment, number FROM rounds ORDER BY experiment, number');
    expect(rows.map((r) => `${r.experiment}:${r.number}`)).toEqual(['alpha:1', 'beta:1', 'beta:2']);
    const metricRows = await queryDatabase<{ experiment: string; round: number; site: string }>(
      fixture,
      'SELECT experiment, round, site FROM site_metrics ORDER BY experiment, round, site',
    );
    expect(metricRows.map((r) => `${r.experiment}:${r.round}:${r.site}`)).toEqual([
      'alpha:1:site-a',
      'alpha:1:site-b',
      'beta:1:site-a',
      'beta:1:site-b',
      'beta:2:site-a',
      'beta:2:site-b',
    ]);
  });
});
