import { request as httpRequest } from 'node:http';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client';
import { PROTOCOL_VERSION } from '@covnet/protocol';
import { Clock } from '../src/clock';
import { FailedAuthLimiter, networkOf } from '../src/auth/failed-auth-limiter';
import { ADMIN_TOKEN, TOKENS, startFixture, type Fixture } from './support/fixtures';

type ConnectOutcome = { connected: true } | { connected: false; code: string | undefined; retryAfterS: number | undefined };

/** A second loopback address: Linux routes all of 127.0.0.0/8 to the loopback interface. */
const OTHER_ADDRESS = '127.0.0.2';

/** GETs a path with the admin token, or another, from a chosen local address. */
function getFrom(url: string, localAddress: string, token: string): Promise<{ status: number; retryAfter: string | undefined }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { localAddress, headers: { authorization: `Bearer ${token}` } }, (response) => {
      response.resume();
      response.on('end', () => resolve({ status: response.statusCode ?? 0, retryAfter: response.headers['retry-after'] }));
    });
    request.on('error', reject);
    request.end();
  });
}

/** A clock whose time the test sets. */
class ManualClock extends Clock {
  time = Date.parse('2026-01-01T00:00:00Z');

  override now(): Date {
    return new Date(this.time);
  }
}

describe('failed authentication limits', () => {
  let fixture: Fixture | null = null;
  const sockets: Socket[] = [];

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.close();
    await fixture?.cleanup();
    fixture = null;
  });

  function tryConnect(auth: Record<string, unknown>, localAddress = '127.0.0.1'): Promise<ConnectOutcome> {
    // engine.io-client hands localAddress to the WebSocket client under Node, but socket.io-client's types omit it.
    const options = { auth: { protocolVersion: PROTOCOL_VERSION, ...auth }, transports: ['websocket'], reconnection: false, autoConnect: false, localAddress };
    const socket = io(fixture!.baseUrl, options as Partial<ManagerOptions & SocketOptions>);
    sockets.push(socket);
    return new Promise((resolve) => {
      socket.once('connect', () => resolve({ connected: true }));
      socket.once('connect_error', (error: Error & { data?: { code?: string; retryAfterS?: number } }) => {
        resolve({ connected: false, code: error.data?.code, retryAfterS: error.data?.retryAfterS });
      });
      socket.connect();
    });
  }

  describe('when a socket client sends wrong tokens', () => {
    it('rejects the sixth attempt in a minute, while other clients connect', async () => {
      fixture = await startFixture();
      for (let attempt = 1; attempt <= 5; attempt++) {
        expect(await tryConnect({ token: `wrong-token-${attempt}`, site: 'site-a' }), `attempt ${attempt}`).toMatchObject({ code: 'auth_unknown_token' });
      }
      const sixth = await tryConnect({ token: 'wrong-token-6', site: 'site-a' });
      expect(sixth).toMatchObject({ connected: false, code: 'rate_limited' });
      const retryAfterS = (sixth as { retryAfterS?: number }).retryAfterS;
      expect(retryAfterS).toBeGreaterThan(0);
      expect(retryAfterS).toBeLessThanOrEqual(60);
      // The blocked client is not asked for its token, even a right one.
      expect(await tryConnect({ token: TOKENS['site-a'], site: 'site-a' })).toMatchObject({ code: 'rate_limited' });
      // Another site from the same address, and the same site from another address, still connect.
      expect(await tryConnect({ token: TOKENS['site-b'], site: 'site-b' })).toEqual({ connected: true });
      expect(await tryConnect({ token: TOKENS['site-a'], site: 'site-a' }, OTHER_ADDRESS)).toEqual({ connected: true });
    });

    it('rejects every claim from an address after twenty failures', async () => {
      fixture = await startFixture();
      for (let attempt = 1; attempt <= 20; attempt++) {
        // Four claims of five attempts each stay within the limit per client.
        const outcome = await tryConnect({ token: `wrong-token-${attempt}`, site: `guess-${Math.ceil(attempt / 5)}` });
        expect(outcome, `attempt ${attempt}`).toMatchObject({ code: 'auth_unknown_token' });
      }
      expect(await tryConnect({ token: TOKENS['site-c'], site: 'site-c' })).toMatchObject({ code: 'rate_limited' });
      expect(await tryConnect({ token: TOKENS['site-c'] })).toMatchObject({ code: 'rate_limited' });
      expect(await tryConnect({ token: TOKENS['site-c'], site: 'site-c' }, OTHER_ADDRESS)).toEqual({ connected: true });
    });

    it('rejects a token claimed for another site as unknown', async () => {
      fixture = await startFixture();
      expect(await tryConnect({ token: TOKENS['site-a'], site: 'site-b' })).toMatchObject({ code: 'auth_unknown_token' });
      expect(await tryConnect({ token: TOKENS['site-a'], site: 'site-a' })).toEqual({ connected: true });
    });
  });

  describe('when a REST client sends wrong admin tokens', () => {
    it('answers the sixth with 429, while another address is served', async () => {
      fixture = await startFixture();
      const url = `${fixture.baseUrl}/api/overview`;
      for (let attempt = 1; attempt <= 5; attempt++) {
        expect((await getFrom(url, OTHER_ADDRESS, `wrong-admin-token-${attempt}`)).status, `attempt ${attempt}`).toBe(401);
      }
      const sixth = await getFrom(url, OTHER_ADDRESS, 'wrong-admin-token-6');
      expect(sixth.status).toBe(429);
      expect(Number(sixth.retryAfter)).toBeGreaterThan(0);
      expect(Number(sixth.retryAfter)).toBeLessThanOrEqual(60);
      expect((await getFrom(url, OTHER_ADDRESS, ADMIN_TOKEN)).status).toBe(429);
      expect((await getFrom(url, '127.0.0.1', ADMIN_TOKEN)).status).toBe(200);
    });
  });

  describe('when tokens are checked', () => {
    it('never writes a token to the log', async () => {
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          lines.push(chunk.toString('utf8'));
          callback();
        },
      });
      fixture = await startFixture({ logger: pino({ level: 'trace' }, sink) });
      const wrongSiteToken = 'wrong-site-token-0123456789';
      const wrongAdminToken = 'wrong-admin-token-0123456789';

      expect(await tryConnect({ token: wrongSiteToken, site: 'site-a' })).toMatchObject({ code: 'auth_unknown_token' });
      expect(await tryConnect({ token: TOKENS['site-b'] })).toEqual({ connected: true });
      expect((await getFrom(`${fixture.baseUrl}/api/sites`, '127.0.0.1', wrongAdminToken)).status).toBe(401);
      expect((await getFrom(`${fixture.baseUrl}/api/sites`, '127.0.0.1', ADMIN_TOKEN)).status).toBe(200);

      const log = lines.join('');
      // The capture works: the rejection and the connection are in it.
      expect(log).toContain('authentication failed: unknown token');
      expect(log).toContain('site site-b connected');
      for (const secret of [wrongSiteToken, TOKENS['site-b'], wrongAdminToken, ADMIN_TOKEN]) {
        expect(log.includes(secret), secret).toBe(false);
      }
    });
  });

  describe('FailedAuthLimiter', () => {
    it('lets a blocked client try again once its failures leave the window', () => {
      const clock = new ManualClock();
      const limiter = new FailedAuthLimiter(clock, pino({ level: 'silent' }));
      const client = { address: '192.0.2.7', claim: 'site:site-a' };
      for (let failure = 0; failure < 5; failure++) {
        expect(limiter.retryAfterS(client)).toBe(0);
        limiter.recordFailure(client, `wrong-token-${failure}`);
        clock.time += 1000;
      }
      // Failures at 0, 1, 2, 3 and 4 s; now is 5 s, and the first leaves the 60 s window at 60 s.
      expect(limiter.retryAfterS(client)).toBe(55);
      clock.time += 54_999;
      expect(limiter.retryAfterS(client)).toBe(1);
      clock.time += 1;
      expect(limiter.retryAfterS(client)).toBe(0);
    });

    it('counts a repeated wrong token once', () => {
      const limiter = new FailedAuthLimiter(new ManualClock(), pino({ level: 'silent' }));
      const client = { address: '192.0.2.7', claim: 'admin' };
      for (let attempt = 0; attempt < 10; attempt++) limiter.recordFailure(client, 'mistyped-token');
      for (let token = 0; token < 3; token++) limiter.recordFailure(client, `other-wrong-token-${token}`);
      // 4 distinct wrong tokens stay under the limit of 5.
      expect(limiter.retryAfterS(client)).toBe(0);
      limiter.recordFailure(client, 'fifth-wrong-token');
      expect(limiter.retryAfterS(client)).toBe(60);
    });

    it('counts IPv6 clients by their /64 network', () => {
      expect(networkOf('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
      expect(networkOf('2001:0db8:0001:0002:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
      expect(networkOf('::ffff:192.0.2.7')).toBe('192.0.2.7');
      expect(networkOf('192.0.2.7')).toBe('192.0.2.7');
    });
  });
});
