import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Server } from 'socket.io';
import { AuthenticationError, FederationAgent } from '../src/federation/agent';
import type { SiteArchive } from '../src/archive/site-archive';

/** Rejection data as the coordinator's handshake middleware sends it. */
class Rejection extends Error {
  constructor(readonly data: { code: string; message: string; retryAfterS?: number }) {
    super(data.message);
  }
}

describe('FederationAgent', () => {
  let io: Server | null = null;

  afterEach(async () => {
    await io?.close();
    io = null;
  });

  describe('when the coordinator rate-limits the handshake', () => {
    it('retries after the wait it was given', async () => {
      const httpServer = createServer();
      io = new Server(httpServer);
      const handshakes: { at: number; auth: Record<string, unknown> }[] = [];
      // A stand-in for the coordinator's middleware: first rate_limited, then a revoked token, which ends the agent.
      io.use((socket, next) => {
        handshakes.push({ at: Date.now(), auth: socket.handshake.auth });
        if (handshakes.length === 1) next(new Rejection({ code: 'rate_limited', message: 'retry in 1 s', retryAfterS: 1 }));
        else next(new Rejection({ code: 'auth_revoked', message: 'revoked' }));
      });
      await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
      const port = (httpServer.address() as AddressInfo).port;

      const agent = new FederationAgent({
        coordinatorUrl: `http://127.0.0.1:${port}`,
        token: 'token-of-site-a',
        site: 'site-a',
        // The agent never joins, so it never reads its archive.
        archive: {} as SiteArchive,
        backend: 'cpu',
        agentVersion: '0.0.0-test',
      });
      const outcome = await agent.run().then(
        () => null,
        (error: Error) => error,
      );

      expect(outcome).toBeInstanceOf(AuthenticationError);
      expect(outcome?.message).toContain('auth_revoked');
      expect(handshakes).toHaveLength(2);
      expect(handshakes[1].at - handshakes[0].at).toBeGreaterThanOrEqual(950);
      expect(handshakes[0].auth).toMatchObject({ token: 'token-of-site-a', site: 'site-a' });
    });
  });
});
