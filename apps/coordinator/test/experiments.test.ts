import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeWeights, encodeWeights, type NamedTensor, type TrainTask } from '@covnet/protocol';
import { loadConfig } from '../src/config/config';
import { FedAdam } from '../src/aggregation/fedadam';
import { readConsortiumFile } from '../src/experiments/experiment-settings';
import { sampleParticipants } from '../src/rounds/participants';
import { loadConfig as loadCoordinatorConfig, startCoordinator } from '../src';
import { FakeAgent } from './support/fake-agent';
import { ADMIN_TOKEN, TOKENS, getJson, initialTensors, queryDatabase, sendJson, startFixture, type Fixture } from './support/fixtures';
import { TEST_DATABASE } from './support/test-database';

describe('readConsortiumFile', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'consortium-file-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function read(name: string, text: string) {
    const path = join(dir, name);
    await writeFile(path, text);
    return readConsortiumFile(path);
  }

  describe('when the file is valid', () => {
    it('reads YAML and fills in the defaults', async () => {
      const [experiment] = await read('one.yaml', 'experiments:\n  - name: covnet-small\n    rounds: 5\n    strategy: { name: fedadam, serverLearningRate: 0.01 }\n');
      expect(experiment).toEqual({
        name: 'covnet-small',
        rounds: 5,
        minSites: 2,
        fractionPerRound: 1,
        roundDeadlineS: 600,
        localEpochs: 1,
        batchSize: 4,
        learningRate: 0.001,
        strategy: { name: 'fedadam', serverLearningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 0.001 },
        evaluateEvery: 1,
      });
    });

    it('reads JSON with several experiments', async () => {
      const experiments = await read(
        'two.json',
        JSON.stringify({ experiments: [{ name: 'a', strategy: { name: 'fedprox', mu: 0.01 } }, { name: 'b', backbone: 'small', inputSize: 32 }] }),
      );
      expect(experiments.map((e) => e.name)).toEqual(['a', 'b']);
      expect(experiments[0].strategy).toEqual({ name: 'fedprox', mu: 0.01 });
      expect(experiments[1]).toMatchObject({ backbone: 'small', inputSize: 32 });
    });
  });

  describe('when the example file is read', () => {
    it('lists its two experiments', async () => {
      const experiments = await readConsortiumFile(join(__dirname, '..', 'consortium.example.yaml'));
      expect(experiments.map((e) => e.name)).toEqual(['covnet-resnet50', 'covnet-small-fedprox']);
      expect(experiments[0].initialModel).toBe(join(__dirname, '..', 'resnet50-v0.cvnw'));
      expect(experiments[1].initialModel).toBeUndefined();
    });
  });

  describe('when the file is invalid', () => {
    it.each([
      ['bad-fraction.yaml', 'experiments:\n  - name: x\n    fractionPerRound: 1.5\n', 'experiments.0: field fractionPerRound'],
      ['no-lr.yaml', 'experiments:\n  - name: x\n    strategy: { name: fedadam }\n', 'field strategy.serverLearningRate'],
      ['unknown.yaml', 'experiments:\n  - name: x\n    epochs: 3\n', "Unrecognized key(s) in object: 'epochs'"],
      ['strategy.yaml', 'experiments:\n  - name: x\n    strategy: { name: scaffold }\n', 'field strategy.name'],
      ['twice.yaml', 'experiments:\n  - name: x\n  - name: x\n', 'experiment x is listed twice'],
      ['empty.yaml', 'experiments: []\n', 'lists no experiment'],
      ['broken.json', '{"experiments": [', 'could not be parsed'],
    ])('rejects %s naming the problem', async (name, text, message) => {
      await expect(read(name, text)).rejects.toThrow(message);
    });
  });
});

describe('FedAdam', () => {
  it('steps by the moments, computed by hand', () => {
    const layout = [
      { name: 'dense/kernel', shape: [2] },
      { name: 'bn/moving_mean', shape: [1] },
    ];
    const adam = new FedAdam(layout, { serverLearningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 0.001 });
    const current: NamedTensor[] = [
      { name: 'dense/kernel', shape: [2], data: new Float32Array([1, 2]) },
      { name: 'bn/moving_mean', shape: [1], data: new Float32Array([5]) },
    ];
    const mean: NamedTensor[] = [
      { name: 'bn/moving_mean', shape: [1], data: new Float32Array([3]) },
      { name: 'dense/kernel', shape: [2], data: new Float32Array([2, 1]) },
    ];
    // Δ = (1, -1); m = 0.1 Δ; v = 0.01 Δ² = 0.01; step = 0.1 · 0.1 / (0.1 + 0.001) = 0.0990099...
    const [kernel, movingMean] = adam.step(current, mean);
    expect(kernel.data[0]).toBeCloseTo(1 + 0.01 / 0.101, 6);
    expect(kernel.data[1]).toBeCloseTo(2 - 0.01 / 0.101, 6);
    expect(Array.from(movingMean.data)).toEqual([3]);

    // Second step from the new model towards the same mean: Δ = 1 - 0.0990099 for the first weight.
    const delta = 1 - 0.01 / 0.101;
    const m = 0.9 * 0.1 + 0.1 * delta;
    const v = 0.99 * 0.01 + 0.01 * delta * delta;
    const [kernel2] = adam.step([{ ...kernel }, movingMean], mean);
    expect(kernel2.data[0]).toBeCloseTo(kernel.data[0] + (0.1 * m) / (Math.sqrt(v) + 0.001), 5);
  });
});

describe('sampleParticipants', () => {
  const ready = ['h1', 'h2', 'h3', 'h4', 'h5', 'h6'];

  it('takes the fraction, at least minSites', () => {
    expect(sampleParticipants(ready, { experiment: 'e', round: 1, fraction: 0.5, minSites: 2 })).toHaveLength(3);
    expect(sampleParticipants(ready, { experiment: 'e', round: 1, fraction: 0.1, minSites: 4 })).toHaveLength(4);
    expect(sampleParticipants(ready, { experiment: 'e', round: 1, fraction: 1, minSites: 2 })).toEqual(ready);
  });

  it('repeats a round and varies across rounds', () => {
    const options = { experiment: 'e', fraction: 0.5, minSites: 1 };
    const first = sampleParticipants(ready, { ...options, round: 1 });
    expect(sampleParticipants([...ready].reverse(), { ...options, round: 1 })).toEqual(first);
    const all = new Set(Array.from({ length: 10 }, (_, i) => sampleParticipants(ready, { ...options, round: i + 1 }).join(',')));
    expect(all.size).toBeGreaterThan(1);
  });
});

describe('loadConfig with a consortium file', () => {
  it('rejects round flags beside it', () => {
    const argv = ['--data-dir', '/tmp/c', '--initial-model', '/tmp/m', '--experiments', '/tmp/consortium.yaml', '--rounds', '3'];
    expect(() => loadConfig(argv, {})).toThrow('--rounds cannot be combined with --experiments');
  });
});

describe('coordinator with a consortium file', () => {
  let fixture: Fixture | null = null;
  const agents: FakeAgent[] = [];

  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.close();
    await fixture?.cleanup();
    fixture = null;
  });

  it('trains a sampled fraction with FedAdam and evaluates every second round', async () => {
    fixture = await startFixture({
      consortiumYaml: [
        'experiments:',
        '  - name: other',
        '  - name: test',
        '    rounds: 2',
        '    minSites: 2',
        '    fractionPerRound: 0.5',
        '    roundDeadlineS: 30',
        '    localEpochs: 3',
        '    batchSize: 8',
        '    learningRate: 0.05',
        '    evaluateEvery: 2',
        '    strategy: { name: fedadam, serverLearningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 0.001 }',
        '',
      ].join('\n'),
    });
    const all = (Object.keys(TOKENS) as (keyof typeof TOKENS)[]).map((site) => {
      const agent = FakeAgent.forToken(fixture!.baseUrl, TOKENS[site]);
      agents.push(agent);
      return { site, agent };
    });
    // The experiment waits until all three are ready, so the sample is drawn from three.
    await fetch(`${fixture.baseUrl}/api/experiments/test/pause`, { method: 'POST', headers: { authorization: 'Bearer admin-token-of-the-tests-0123' } });
    for (const { agent } of all) await agent.connect();
    for (const { agent } of all) await agent.hello();
    await fetch(`${fixture.baseUrl}/api/experiments/test/start`, { method: 'POST', headers: { authorization: 'Bearer admin-token-of-the-tests-0123' } });

    // Half of three sites, at least two: two participants.
    const expected = sampleParticipants(['site-a', 'site-b', 'site-c'], { experiment: 'test', round: 1, fraction: 0.5, minSites: 2 });
    expect(expected).toHaveLength(2);
    const participants = all.filter(({ site }) => expected.includes(site));
    const tasks = await Promise.all(participants.map(({ agent }) => agent.next<TrainTask>('round:train')));
    expect(tasks[0].hyper).toEqual({ epochs: 3, learningRate: 0.05, batchSize: 8, proximalMu: 0 });
    const idle = all.find(({ site }) => !expected.includes(site))!;
    await expect(idle.agent.next('round:train', 300)).rejects.toThrow('no round:train');

    // Both send all-ones: the FedAvg mean is 1 everywhere, Δ = 1 from the all-zero model,
    // so FedAdam's first step is 0.1 · 0.1 / (0.1 + 0.001) for weights and 1 for the moving mean.
    const ones = initialTensors().map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(1) }));
    for (const { agent } of participants) expect(await agent.upload(1, 0, 2, encodeWeights(ones))).toEqual({ ok: true, accepted: true });

    // Round 1 is not evaluated: the next message is round 2's train task, to a new sample.
    const second = sampleParticipants(['site-a', 'site-b', 'site-c'], { experiment: 'test', round: 2, fraction: 0.5, minSites: 2 });
    const next = await all.find(({ site }) => site === second[0])!.agent.next<TrainTask>('round:train');
    expect(next.round).toBe(2);
    const version1 = await fetch(`${fixture.baseUrl}/api/models/1/download`, { headers: { authorization: 'Bearer admin-token-of-the-tests-0123' } });
    const tensors = decodeWeights(new Uint8Array(await version1.arrayBuffer())).tensors;
    expect(tensors.find((t) => t.name === 'dense/kernel')!.data[0]).toBeCloseTo(0.01 / 0.101, 6);
    expect(Array.from(tensors.find((t) => t.name === 'bn/moving_mean')!.data)).toEqual([1, 1, 1]);
    const evaluated = await queryDatabase<{ n: number }>(fixture, 'SELECT CAST(COUNT(*) AS INTEGER) AS n FROM site_metrics');
    expect(evaluated[0].n).toBe(0);

    const experiments = await getJson(`${fixture.baseUrl}/api/experiments`);
    expect(experiments.body[0].settings).toMatchObject({ name: 'test', fractionPerRound: 0.5, evaluateEvery: 2, strategy: { name: 'fedadam' } });
  });
});

describe('experiments API', () => {
  let fixture: Fixture | null = null;

  afterEach(async () => {
    await fixture?.cleanup();
    fixture = null;
  });

  describe('when an experiment is created', () => {
    it('validates and stores it in state created', async () => {
      fixture = await startFixture();
      const created = await sendJson('POST', `${fixture.baseUrl}/api/experiments`, { name: 'second', rounds: 4, strategy: { name: 'fedprox', mu: 0.1 } });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ name: 'second', state: 'created', settings: { rounds: 4, minSites: 2, strategy: { name: 'fedprox', mu: 0.1 } } });
      expect(typeof created.body.id).toBe('number');

      const invalid = await sendJson('POST', `${fixture.baseUrl}/api/experiments`, { name: 'third', rounds: 0 });
      expect(invalid.status).toBe(400);
      expect(invalid.body.message).toContain('field rounds');
      expect((await sendJson('POST', `${fixture.baseUrl}/api/experiments`, { name: 'second' })).status).toBe(409);
      expect((await sendJson('POST', `${fixture.baseUrl}/api/experiments`, { name: 'test' })).status).toBe(409);

      const list = await getJson(`${fixture.baseUrl}/api/experiments`);
      expect(list.body.map((e: { name: string; state: string }) => `${e.name}:${e.state}`)).toEqual(['test:running', 'second:created']);
      // Pause applies only to an experiment this coordinator runs; start runs a stored one here.
      expect((await sendJson('POST', `${fixture.baseUrl}/api/experiments/second/pause`)).status).toBe(404);
      expect((await sendJson('POST', `${fixture.baseUrl}/api/experiments/missing/start`)).status).toBe(404);
      const started = await sendJson('POST', `${fixture.baseUrl}/api/experiments/second/start`);
      expect(started.status).toBe(200);
      expect(started.body).toMatchObject({ name: 'second', state: 'running' });
      const overview = await getJson(`${fixture.baseUrl}/api/overview?experiment=second`);
      expect(overview.body).toMatchObject({ experiment: 'second', experiments: ['test', 'second'], roundsPlanned: 4, latestModelVersion: 0 });
      expect((await getJson(`${fixture.baseUrl}/api/rounds?experiment=missing`)).status).toBe(404);
    });
  });

  // Two coordinators share one database only on PostgreSQL: SQLite lives in the data dir.
  describe.skipIf(TEST_DATABASE !== 'postgres')('when a created experiment is run by a second coordinator', () => {
    it('uses the stored settings and keeps its own lineage', async () => {
      fixture = await startFixture();
      await sendJson('POST', `${fixture.baseUrl}/api/experiments`, { name: 'second', rounds: 4, minSites: 3, localEpochs: 5 });
      const dataDir = await mkdtemp(join(tmpdir(), 'coordinator-second-'));
      const second = await startCoordinator(
        loadCoordinatorConfig(
          ['--port', '0', '--data-dir', dataDir, '--initial-model', join(fixture.dataDir, 'initial.cvnw'), '--experiment', 'second'],
          { LOG_LEVEL: 'silent', COVNET_ADMIN_TOKEN: ADMIN_TOKEN, ...fixture.database.env },
        ),
      );
      second.done.catch(() => {});
      try {
        const url = `http://127.0.0.1:${second.port}`;
        const overview = await getJson(`${url}/api/overview`);
        expect(overview.body).toMatchObject({ experiment: 'second', state: 'created', roundsPlanned: 4 });
        const experiments = await getJson(`${url}/api/experiments`);
        expect(experiments.body.find((e: { name: string }) => e.name === 'second').settings).toMatchObject({ rounds: 4, minSites: 3, localEpochs: 5 });

        // The first coordinator's sites can join the second; its rounds are its own.
        const agents = (['site-a', 'site-b', 'site-c'] as const).map((site) => FakeAgent.forToken(url, TOKENS[site]));
        try {
          for (const agent of agents) await agent.connect();
          for (const agent of agents) await agent.hello();
          await expect(agents[0].next('round:train', 300)).rejects.toThrow('no round:train');
          expect((await sendJson('POST', `${url}/api/experiments/second/start`)).body.state).toBe('running');
          const task = await agents[0].next<TrainTask>('round:train');
          expect(task).toMatchObject({ experiment: 'second', round: 1, modelVersion: 0, hyper: { epochs: 5 } });
          const rounds = await queryDatabase<{ experiment: string; number: number }>(fixture, 'SELECT experiment, number FROM rounds ORDER BY experiment, number');
          expect(rounds).toEqual([
            { experiment: 'second', number: 1 },
            { experiment: 'test', number: 1 },
          ]);
          const versions = await queryDatabase<{ experiment: string; path: string }>(fixture, 'SELECT experiment, path FROM model_versions ORDER BY experiment');
          expect(versions.map((v) => v.experiment)).toEqual(['second', 'test']);
          // Paths are relative to each coordinator's own data dir, so both rows name the same relative path.
          expect(versions.map((v) => v.path)).toEqual(['checkpoints/model-v0.cvnw', 'checkpoints/model-v0.cvnw']);
          expect(existsSync(join(dataDir, versions[0].path))).toBe(true);
        } finally {
          for (const agent of agents) agent.close();
        }
      } finally {
        await second.close();
        await rm(dataDir, { recursive: true, force: true });
      }
    });
  });
});
