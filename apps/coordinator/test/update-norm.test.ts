import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeWeights, encodeWeights, type NamedTensor, type TrainTask } from '@covnet/protocol';
import { FakeAgent } from './support/fake-agent';
import { TOKENS, getJson, initialTensors, sendJson, startFixture, type Fixture } from './support/fixtures';

/** Returns the 12-value test model with every value set to `value`. */
function filled(value: number): NamedTensor[] {
  return initialTensors().map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(value) }));
}

async function checkpointValues(fixture: Fixture, version: number): Promise<number[]> {
  const payload = await readFile(join(fixture.dataDir, 'checkpoints', `model-v${version}.cvnw`));
  return decodeWeights(payload).tensors.flatMap((t) => Array.from(t.data));
}

// The initial model is all zeros, so an update filled with v lies at distance
// v * sqrt(12) from it. In round 2 the global model is filled with 1.5.
const CONSORTIUM = [
  'experiments:',
  '  - name: test',
  '    rounds: 2',
  '    minSites: 2',
  '    roundDeadlineS: 1.5',
  '    aggregation: median',
  '    maxUpdateNorm: 100',
  '    maxUpdateNormRatio: 3',
  '',
].join('\n');

describe('update norm check in a round', () => {
  let fixture: Fixture | null = null;
  const agents: FakeAgent[] = [];

  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.close();
    await fixture?.cleanup();
    fixture = null;
  });

  describe('when a site sends an update far from the global model', () => {
    it('rejects the outlier and takes the median', async () => {
      fixture = await startFixture({ consortiumYaml: CONSORTIUM });
      const [a, b, c] = (['site-a', 'site-b', 'site-c'] as const).map((site) => FakeAgent.forToken(fixture!.baseUrl, TOKENS[site]));
      agents.push(a, b, c);
      // Paused until all three have sent hello, so that all three are participants.
      await sendJson('POST', `${fixture.baseUrl}/api/experiments/test/pause`);
      for (const site of [a, b, c]) await site.connect();
      for (const site of [a, b, c]) await site.hello();
      await sendJson('POST', `${fixture.baseUrl}/api/experiments/test/start`);
      for (const site of [a, b, c]) await site.next<TrainTask>('round:train');

      // Round 1: distances sqrt(12) = 3.46 and 2 sqrt(12) = 6.93 pass; 1000 sqrt(12) = 3464 is above maxUpdateNorm 100.
      expect(await a.upload(1, 0, 1, encodeWeights(filled(1)))).toEqual({ ok: true, accepted: true });
      expect(await b.upload(1, 0, 3, encodeWeights(filled(2)))).toEqual({ ok: true, accepted: true });
      const outlier = await c.upload(1, 0, 2, encodeWeights(filled(1000)));
      expect(outlier).toMatchObject({ ok: false, error: { code: 'update_norm_outlier' } });
      expect(outlier.ok ? '' : outlier.error.message).toContain('above maxUpdateNorm 100.0: dropped, round 1 continues');

      // The round closes at the deadline without site-c; the median of {1, 2} is 1.5.
      const task2 = await a.next<TrainTask>('round:train', 10_000);
      await b.next<TrainTask>('round:train');
      await c.next<TrainTask>('round:train');
      expect(task2).toMatchObject({ round: 2, modelVersion: 1 });
      expect(await checkpointValues(fixture, 1)).toEqual(new Array(12).fill(1.5));
      const round1 = await getJson(`${fixture.baseUrl}/api/rounds/1`);
      expect(round1.body.leftOut).toEqual([{ site: 'site-c', reason: 'rejected', code: 'update_norm_outlier' }]);

      // Round 2: the reference is the median of round 1's distances, 1.5 sqrt(12) = 5.20, so the
      // bound is 15.59. Offsets of 1, 2 and 4 from the global model (3.46, 6.93, 13.86) pass;
      // an offset of 5 (17.32, 3.33 times the reference) does not.
      expect(await a.upload(2, 1, 1, encodeWeights(filled(2.5)))).toEqual({ ok: true, accepted: true });
      expect(await b.upload(2, 1, 3, encodeWeights(filled(3.5)))).toEqual({ ok: true, accepted: true });
      const far = await c.upload(2, 1, 2, encodeWeights(filled(6.5)));
      expect(far).toMatchObject({ ok: false, error: { code: 'update_norm_outlier' } });
      expect(far.ok ? '' : far.error.message).toContain("3.333 times the previous round's median 5.196, above maxUpdateNormRatio 3");
      expect(await c.upload(2, 1, 2, encodeWeights(filled(5.5)))).toEqual({ ok: true, accepted: true });

      // All three are in, so the round closes at once; the median of {2.5, 3.5, 5.5} is 3.5.
      await fixture.coordinator.done;
      expect(await checkpointValues(fixture, 2)).toEqual(new Array(12).fill(3.5));
      const round2 = await getJson(`${fixture.baseUrl}/api/rounds/2`);
      expect(round2.body.leftOut).toEqual([]);
    }, 20_000);
  });
});
