import { afterEach, describe, expect, it } from 'vitest';
import { encodeWeights, describePayload, type NamedTensor, type TrainTask } from '@covnet/protocol';
import { FakeAgent } from './support/fake-agent';
import { TOKENS, getJson, initialTensors, queryDatabase, startFixture, type Fixture } from './support/fixtures';

async function countUpdates(fixture: Fixture): Promise<number> {
  // COUNT is bigint on PostgreSQL, which its driver returns as a string; the cast keeps it a number on both.
  const [row] = await queryDatabase<{ n: number }>(fixture, 'SELECT CAST(COUNT(*) AS INTEGER) AS n FROM updates');
  return row.n;
}

async function connectError(agent: FakeAgent): Promise<{ message: string; data?: { code: string; message: string } }> {
  try {
    await agent.connect();
  } catch (error) {
    return error as { message: string; data?: { code: string; message: string } };
  }
  throw new Error('connection was accepted');
}

describe('FederationGateway', () => {
  let fixture: Fixture | null = null;
  const agents: FakeAgent[] = [];

  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.close();
    await fixture?.cleanup();
    fixture = null;
  });

  function agent(auth: Record<string, unknown>): FakeAgent {
    const created = new FakeAgent(fixture!.baseUrl, auth);
    agents.push(created);
    return created;
  }

  /** Sites a and b join, round 1 starts; returns them with the train task. */
  async function startRound(): Promise<{ a: FakeAgent; b: FakeAgent; task: TrainTask }> {
    const a = agent({ token: TOKENS['site-a'], protocolVersion: 1 });
    const b = agent({ token: TOKENS['site-b'], protocolVersion: 1 });
    await a.connect();
    await b.connect();
    await a.hello();
    await b.hello();
    const task = await a.next<TrainTask>('round:train');
    await b.next<TrainTask>('round:train');
    return { a, b, task };
  }

  describe('when the handshake is invalid', () => {
    it('rejects a missing token', async () => {
      fixture = await startFixture();
      const error = await connectError(agent({ protocolVersion: 1 }));
      expect(error.message).toBe('authentication failed: no token');
      expect(error.data).toEqual({ code: 'auth_missing_token', message: 'authentication failed: no token' });
    });

    it('rejects an unknown token', async () => {
      fixture = await startFixture();
      const error = await connectError(agent({ token: 'token-of-nobody', protocolVersion: 1 }));
      expect(error.data?.code).toBe('auth_unknown_token');
    });

    it('rejects another protocol version', async () => {
      fixture = await startFixture();
      const error = await connectError(agent({ token: TOKENS['site-a'], protocolVersion: 2 }));
      expect(error.data?.code).toBe('auth_protocol_mismatch');
      expect(error.message).toContain('protocol version 2');
    });
  });

  describe('when a site connects twice', () => {
    it('closes the earlier connection', async () => {
      fixture = await startFixture();
      const first = agent({ token: TOKENS['site-a'], protocolVersion: 1 });
      await first.connect();
      const disconnected = new Promise<string>((resolve) => first.socket.once('disconnect', (reason) => resolve(reason)));
      const second = agent({ token: TOKENS['site-a'], protocolVersion: 1 });
      await second.connect();
      expect(await disconnected).toBe('io server disconnect');
      expect(second.socket.connected).toBe(true);
      const sites = await getJson(`${fixture.baseUrl}/api/sites`);
      expect(sites.body.find((s: { name: string }) => s.name === 'site-a').online).toBe(true);
    });
  });

  describe('when update:begin is malformed', () => {
    it('answers invalid_message naming the field and changes nothing', async () => {
      fixture = await startFixture();
      const { a } = await startRound();
      const payload = encodeWeights(initialTensors());
      const before = await getJson(`${fixture.baseUrl}/api/rounds`);

      const reply = await a.request('update:begin', {
        round: 1,
        modelVersion: 0,
        numExamples: -3,
        trainLoss: 0.5,
        payload: describePayload(payload, 40),
      });
      expect(reply.ok).toBe(false);
      if (reply.ok) return;
      expect(reply.error.code).toBe('invalid_message');
      expect(reply.error.message).toContain('field numExamples');

      const missing = await a.request('update:begin', { round: 1, modelVersion: 0, numExamples: 1, trainLoss: 0.5 });
      expect(missing.ok).toBe(false);
      if (!missing.ok) expect(missing.error.message).toContain('field payload');

      expect(await getJson(`${fixture.baseUrl}/api/rounds`)).toEqual(before);
      expect(await countUpdates(fixture)).toBe(0);
      expect(await a.upload(1, 0, 1, payload)).toEqual({ ok: true, accepted: true });
      expect(await countUpdates(fixture)).toBe(1);
    });
  });

  describe('when an update does not fit the round', () => {
    it('rejects it with the reason code', async () => {
      fixture = await startFixture();
      const { a, task } = await startRound();
      const good = encodeWeights(initialTensors());
      const code = async (reply: Promise<{ ok: boolean; error?: { code: string } }>) => {
        const ack = await reply;
        return ack.ok ? 'ok' : ack.error!.code;
      };

      expect(await code(a.upload(2, 0, 1, good))).toBe('stale_round');
      expect(await code(a.upload(1, 7, 1, good))).toBe('wrong_model_version');
      // HELLO declares 1 + 1 + 1 training exams; a claim of 4 would outweigh the other sites.
      expect(await code(a.upload(1, 0, 4, good))).toBe('invalid_message');

      const renamed: NamedTensor[] = initialTensors().map((t, i) => (i === 2 ? { ...t, name: 'bn/moving_variance' } : t));
      expect(await code(a.upload(1, 0, 1, encodeWeights(renamed)))).toBe('weights_mismatch');
      const reshaped: NamedTensor[] = initialTensors().map((t, i) => (i === 0 ? { ...t, shape: [3, 2] } : t));
      expect(await code(a.upload(1, 0, 1, encodeWeights(reshaped)))).toBe('weights_mismatch');
      const withNaN = initialTensors();
      withNaN[1].data[2] = Number.NaN;
      expect(await code(a.upload(1, 0, 1, encodeWeights(withNaN)))).toBe('weights_not_finite');

      const huge = new Uint8Array(task.model.byteLength * 4 + 64 * 1024 + 1);
      expect(await code(a.begin(1, 0, 1, huge, 512 * 1024))).toBe('payload_too_large');

      // site-c joins after the round started, so it is not a participant.
      const c = agent({ token: TOKENS['site-c'], protocolVersion: 1 });
      await c.connect();
      await c.hello();
      expect(await code(c.upload(1, 0, 1, good))).toBe('not_participant');

      expect(await code(a.request('model:chunk', { version: 9, index: 0 }))).toBe('unknown_model_version');
      expect(await code(a.request('update:chunk', { uploadId: 'no-such-upload', index: 0, data: Buffer.alloc(4) }))).toBe('unknown_upload');
      expect(await countUpdates(fixture)).toBe(0);
    });
  });
});

describe('REST API', () => {
  let fixture: Fixture | null = null;

  afterEach(async () => {
    await fixture?.cleanup();
    fixture = null;
  });

  describe('when the round does not exist', () => {
    it('answers 404 with a message', async () => {
      fixture = await startFixture();
      const reply = await getJson(`${fixture.baseUrl}/api/rounds/7/metrics`);
      expect(reply.status).toBe(404);
      expect(reply.body.message).toBe('round 7 does not exist');
    });
  });

  describe('when the round number is not an integer', () => {
    it('answers 400', async () => {
      fixture = await startFixture();
      for (const segment of ['1.5', 'abc', '0', '-2']) {
        const reply = await getJson(`${fixture.baseUrl}/api/rounds/${segment}/metrics`);
        expect(reply.status, segment).toBe(400);
        expect(reply.body.message, segment).toContain('positive integer');
      }
    });
  });
});
