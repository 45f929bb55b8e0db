import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeWeights, type NamedTensor, type TrainTask } from '@covnet/protocol';
import { FedAdam } from '../src/aggregation/fedadam';
import { FakeAgent } from './support/fake-agent';
import { INITIAL_META, TOKENS, initialTensors, queryDatabase, startFixture, type Fixture } from './support/fixtures';

const STRATEGY = { serverLearningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 0.001 };
const ROUNDS = 3;
// Round 3 alone is evaluated, so rounds 1 and 2 go straight from aggregation to the next train task.
const CONSORTIUM = [
  'experiments:',
  '  - name: test',
  `    rounds: ${ROUNDS}`,
  '    minSites: 2',
  '    roundDeadlineS: 30',
  '    evaluateEvery: 10',
  `    strategy: { name: fedadam, serverLearningRate: ${STRATEGY.serverLearningRate}, beta1: ${STRATEGY.beta1}, beta2: ${STRATEGY.beta2}, tau: ${STRATEGY.tau} }`,
  '',
].join('\n');

/** Update of `site` in `round`: values that are not exact in float32 and change sign, so that every moment matters. */
function updateOf(site: 'site-a' | 'site-b', round: number): NamedTensor[] {
  const offset = site === 'site-a' ? 0.37 : -0.61;
  return initialTensors().map((tensor, k) => ({
    ...tensor,
    data: Float32Array.from(tensor.data, (_, i) => Math.sin(round * 1.3 + k * 0.7 + i) * (1 + offset) + offset / round),
  }));
}

const EXAMS = { 'site-a': 1, 'site-b': 3 } as const;

describe('FedAdam across a coordinator restart', () => {
  let fixture: Fixture | null = null;
  const agents: FakeAgent[] = [];

  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.close();
    await fixture?.cleanup();
    fixture = null;
  });

  async function join2(f: Fixture): Promise<Record<'site-a' | 'site-b', FakeAgent>> {
    const joined = {} as Record<'site-a' | 'site-b', FakeAgent>;
    for (const site of ['site-a', 'site-b'] as const) {
      const agent = FakeAgent.forToken(f.baseUrl, TOKENS[site]);
      agents.push(agent);
      await agent.connect();
      expect((await agent.hello()).ok).toBe(true);
      joined[site] = agent;
    }
    return joined;
  }

  async function trainRound(sites: Record<'site-a' | 'site-b', FakeAgent>, round: number): Promise<void> {
    for (const site of ['site-a', 'site-b'] as const) {
      const task = await sites[site].next<TrainTask>('round:train');
      expect(task).toMatchObject({ round, modelVersion: round - 1 });
      expect(await sites[site].upload(round, round - 1, EXAMS[site], encodeWeights(updateOf(site, round)))).toEqual({ ok: true, accepted: true });
    }
  }

  async function checkpoints(f: Fixture): Promise<Buffer[]> {
    return Promise.all(Array.from({ length: ROUNDS }, (_, i) => readFile(join(f.dataDir, 'checkpoints', `model-v${i + 1}.cvnw`))));
  }

  /** Runs every round without a restart and returns checkpoints v1..v3. */
  async function uninterrupted(): Promise<Buffer[]> {
    const f = await startFixture({ consortiumYaml: CONSORTIUM });
    try {
      const sites = await join2(f);
      for (let round = 1; round <= ROUNDS; round++) await trainRound(sites, round);
      await sites['site-a'].next('round:evaluate');
      return await checkpoints(f);
    } finally {
      for (const agent of agents.splice(0)) agent.close();
      await f.cleanup();
    }
  }

  it('gives the same checkpoints bit for bit', async () => {
    const expected = await uninterrupted();
    // Independent check of the reference run: FedAdam stepped in this process over the FedAvg means.
    const adam = new FedAdam(initialTensors().map((t) => ({ name: t.name, shape: t.shape })), STRATEGY);
    let model = initialTensors();
    for (let round = 1; round <= ROUNDS; round++) {
      const a = updateOf('site-a', round);
      const b = updateOf('site-b', round);
      const mean = a.map((t, k) => ({ ...t, data: Float32Array.from(t.data, (x, i) => Math.fround((x * EXAMS['site-a'] + b[k].data[i] * EXAMS['site-b']) / 4)) }));
      model = adam.step(model, mean);
      expect(expected[round - 1].equals(encodeWeights(model, 'float32', INITIAL_META)), `version ${round}`).toBe(true);
    }

    fixture = await startFixture({ consortiumYaml: CONSORTIUM });
    let sites = await join2(fixture);
    await trainRound(sites, 1);
    await trainRound(sites, 2);
    // Round 3's task is out, so version 2 and its moments are stored.
    await sites['site-a'].next<TrainTask>('round:train');
    for (const agent of agents.splice(0)) agent.close();
    await fixture.restart();

    sites = await join2(fixture);
    await trainRound(sites, 3);
    await sites['site-a'].next('round:evaluate');
    const resumed = await checkpoints(fixture);
    for (let i = 0; i < ROUNDS; i++) expect(resumed[i].equals(expected[i]), `version ${i + 1}`).toBe(true);

    const rows = await queryDatabase<{ version: number; optimizer_state_path: string | null }>(
      fixture,
      'SELECT version, optimizer_state_path FROM model_versions ORDER BY version',
    );
    // Only the latest version keeps its state: a restart needs no other.
    expect(rows.map((row) => row.optimizer_state_path)).toEqual([null, null, null, 'checkpoints/fedadam-v3.state']);
    for (const version of [1, 2]) expect(existsSync(join(fixture.dataDir, 'checkpoints', `fedadam-v${version}.state`)), `version ${version}`).toBe(false);
  });

  it('rejects an altered state file', async () => {
    fixture = await startFixture({ consortiumYaml: CONSORTIUM });
    const sites = await join2(fixture);
    await trainRound(sites, 1);
    await sites['site-a'].next<TrainTask>('round:train');
    for (const agent of agents.splice(0)) agent.close();
    const statePath = join(fixture.dataDir, 'checkpoints', 'fedadam-v1.state');
    const state = await readFile(statePath);
    state[state.byteLength - 1] ^= 1;
    await writeFile(statePath, state);

    await fixture.restart();
    const again = await join2(fixture);
    for (const site of ['site-a', 'site-b'] as const) {
      await again[site].next<TrainTask>('round:train');
      await again[site].upload(2, 1, EXAMS[site], encodeWeights(updateOf(site, 2)));
    }
    await expect(fixture.coordinator.done).rejects.toThrow(`optimizer state ${statePath} of model version 1 has SHA-256`);
  });
});
