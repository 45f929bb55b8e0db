import { readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { describePayload, encodeWeights, type EvaluateTask, type NamedTensor, type TrainTask } from '@covnet/protocol';
import { FakeAgent } from './support/fake-agent';
import { INITIAL_META, TOKENS, queryDatabase, startFixture, type Fixture } from './support/fixtures';

// Site A trained on 1 exam, site B on 3: FedAvg is (1*a + 3*b) / 4, exact in float32.
const UPDATE_A: NamedTensor[] = [
  { name: 'dense/kernel', shape: [2, 3], data: new Float32Array([1, 2, -4, 0.5, 8, 3]) },
  { name: 'dense/bias', shape: [3], data: new Float32Array([0, 1, 2]) },
  { name: 'bn/moving_mean', shape: [3], data: new Float32Array([0.25, 0, 1]) },
];
const UPDATE_B: NamedTensor[] = [
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

describe('round resumed by a new coordinator', () => {
  let fixture: Fixture | null = null;
  const agents: FakeAgent[] = [];

  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.close();
    await fixture?.cleanup();
    fixture = null;
  });

  async function joinSite(f: Fixture, site: keyof typeof TOKENS): Promise<FakeAgent> {
    const agent = FakeAgent.forToken(f.baseUrl, TOKENS[site]);
    agents.push(agent);
    await agent.connect();
    expect((await agent.hello()).ok).toBe(true);
    return agent;
  }

  describe('when one update was accepted before the restart', () => {
    it('folds it in again and counts it once', async () => {
      fixture = await startFixture({ rounds: 1, minSites: 2 });
      const a = await joinSite(fixture, 'site-a');
      const b = await joinSite(fixture, 'site-b');
      await a.next<TrainTask>('round:train');
      await b.next<TrainTask>('round:train');
      const payloadA = encodeWeights(UPDATE_A);
      expect(await a.upload(1, 0, 1, payloadA)).toEqual({ ok: true, accepted: true });
      const [stored] = await queryDatabase<{ payload_path: string }>(fixture, 'SELECT payload_path FROM updates');
      expect(existsSync(join(fixture.dataDir, stored.payload_path))).toBe(true);

      await fixture.restart();
      const a2 = await joinSite(fixture, 'site-a');
      const b2 = await joinSite(fixture, 'site-b');
      // Only site B still owes an update, so only it receives the task again.
      expect(await b2.next<TrainTask>('round:train')).toMatchObject({ round: 1, modelVersion: 0 });
      await expect(a2.next<TrainTask>('round:train', 300)).rejects.toThrow(/no round:train/);
      expect(await a2.upload(1, 0, 1, payloadA)).toEqual({ ok: true, uploadId: '', nextIndex: describePayload(payloadA, 40).chunkCount, duplicate: true });
      expect(await b2.upload(1, 0, 3, encodeWeights(UPDATE_B))).toEqual({ ok: true, accepted: true });

      expect(await a2.next<EvaluateTask>('round:evaluate')).toMatchObject({ round: 1, modelVersion: 1 });
      const checkpoint = await readFile(join(fixture.dataDir, 'checkpoints', 'model-v1.cvnw'));
      expect(checkpoint.equals(encodeWeights(EXPECTED_V1, 'float32', INITIAL_META))).toBe(true);
      const rows = await queryDatabase<{ site: string; payload_path: string | null }>(fixture, 'SELECT site, payload_path FROM updates ORDER BY id');
      expect(rows).toEqual([
        { site: 'site-a', payload_path: null },
        { site: 'site-b', payload_path: null },
      ]);
      expect(existsSync(join(fixture.dataDir, stored.payload_path))).toBe(false);
    });
  });

  describe('when a stored update was altered on disk', () => {
    it('refuses to resume the round', async () => {
      fixture = await startFixture({ rounds: 1, minSites: 2 });
      const a = await joinSite(fixture, 'site-a');
      await joinSite(fixture, 'site-b');
      await a.next<TrainTask>('round:train');
      expect(await a.upload(1, 0, 1, encodeWeights(UPDATE_A))).toEqual({ ok: true, accepted: true });
      const [stored] = await queryDatabase<{ payload_path: string }>(fixture, 'SELECT payload_path FROM updates');
      await writeFile(join(fixture.dataDir, stored.payload_path), encodeWeights(UPDATE_B));

      await fixture.restart();
      await expect(fixture.coordinator.done).rejects.toThrow(/stored update .* has SHA-256 [0-9a-f]{64}, the database records [0-9a-f]{64}/);
    });
  });
});
