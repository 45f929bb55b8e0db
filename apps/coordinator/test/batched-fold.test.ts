import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { describePayload, encodeWeights, type NamedTensor, type TrainTask, type UpdateCommitReply } from '@covnet/protocol';
import { fedAvg } from '../src/aggregation/fedavg';
import { loadNativeFold } from '../src/aggregation/native-fold';
import { FakeAgent } from './support/fake-agent';
import { INITIAL_META, TOKENS, initialTensors, queryDatabase, startFixture, type Fixture } from './support/fixtures';

const LAYOUT = initialTensors().map((t) => ({ name: t.name, shape: t.shape }));

/** Returns an update of the test model with every value `value`, except dense/bias, which is `bias`. */
function update(value: number, bias: number[]): NamedTensor[] {
  return initialTensors().map((t) => ({ ...t, data: t.name === 'dense/bias' ? new Float32Array(bias) : new Float32Array(t.data.length).fill(value) }));
}

// Float64 absorbs the small values into 1e30, so the mean depends on the
// order in which the coordinator folds the three updates.
const UPDATES: Record<keyof typeof TOKENS, NamedTensor[]> = {
  'site-a': update(1e30, [1e30, 1e30, 1e30]),
  'site-b': update(0.75, [1, 2, 3]),
  'site-c': update(-1e30, [-1e30, -1e30, -1e30]),
};

describe('FedAvg updates committed together', () => {
  let fixture: Fixture | null = null;
  const agents: FakeAgent[] = [];

  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.close();
    await fixture?.cleanup();
    fixture = null;
  });

  it('are folded in one batched pass in acceptance order', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString('utf8'));
        callback();
      },
    });
    fixture = await startFixture({ rounds: 1, minSites: 3, logger: pino({ level: 'debug' }, sink) });
    const sites = Object.keys(TOKENS) as (keyof typeof TOKENS)[];
    for (const site of sites) {
      const agent = FakeAgent.forToken(fixture.baseUrl, TOKENS[site]);
      agents.push(agent);
      await agent.connect();
      expect((await agent.hello()).ok).toBe(true);
    }
    for (const agent of agents) await agent.next<TrainTask>('round:train');

    // Every upload is complete before the first commit, so the three commits
    // reach the coordinator together and queue behind one another.
    const uploadIds: string[] = [];
    for (const [i, site] of sites.entries()) {
      const payload = encodeWeights(UPDATES[site]);
      const ref = describePayload(payload, 40);
      const begun = await agents[i].begin(1, 0, 1, payload, 40, ref);
      if (!begun.ok) throw new Error(`update:begin of ${site} failed: ${begun.error.code}`);
      for (let index = 0; index < ref.chunkCount; index++) expect((await agents[i].sendChunk(begun.uploadId, payload, ref, index)).ok).toBe(true);
      uploadIds.push(begun.uploadId);
    }
    const replies = await Promise.all(agents.map((agent, i) => agent.request<UpdateCommitReply>('update:commit', { uploadId: uploadIds[i] })));
    expect(replies).toEqual(sites.map(() => ({ ok: true, accepted: true })));

    const rows = await queryDatabase<{ site: keyof typeof TOKENS }>(fixture, 'SELECT site FROM updates ORDER BY id');
    const entries = lines.map((line) => JSON.parse(line) as { msg: string; updates?: number; fedavgKernel?: string });
    const kernelLines = entries.filter((entry) => entry.msg.startsWith('FedAvg folds updates with'));
    expect(kernelLines.map((entry) => entry.fedavgKernel)).toEqual([loadNativeFold().fold === null ? 'wasm' : 'native']);
    const passes = entries.filter((entry) => entry.msg.endsWith('waiting updates folded in one batched pass'));
    expect(passes.map((entry) => entry.updates).some((n) => n! >= 2), `batched passes: ${JSON.stringify(passes)}`).toBe(true);

    await agents[0].next('round:evaluate');
    const checkpoint = await readFile(join(fixture.dataDir, 'checkpoints', 'model-v1.cvnw'));
    const oneByOne = fedAvg(LAYOUT, rows.map((row) => ({ tensors: UPDATES[row.site], weight: 1 })));
    expect(checkpoint.equals(encodeWeights(oneByOne, 'float32', INITIAL_META))).toBe(true);
  });
});
