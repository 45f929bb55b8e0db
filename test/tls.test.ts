import { request as httpsRequest } from 'node:https';
import { Writable } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Socket } from 'socket.io-client';
import { createCoordinatorSocket, describeConnectError, readAgentTls, AgentTlsError, type AgentTls } from '@covnet/site-agent';
import { loadConfig } from '@covnet/coordinator';
import { ADMIN_TOKEN, TOKENS, startFixture, type Fixture } from '../apps/coordinator/test/support/fixtures';
import { TestPki, opensslAvailable, type TestCa, type Issued } from '../apps/coordinator/test/support/test-pki';

const OPENSSL = opensslAvailable();
if (!OPENSSL) console.warn('tls.test.ts: skipped, the system `openssl` binary is missing and the tests make their certificates with it');

type ConnectOutcome = { connected: true } | { connected: false; message: string; code: string | undefined; described: string };

/** Connects an agent socket once, without retries, and reports whether the coordinator accepted it. */
function tryConnect(socket: Socket): Promise<ConnectOutcome> {
  return new Promise((resolve) => {
    socket.once('connect', () => resolve({ connected: true }));
    socket.once('connect_error', (error: Error & { data?: { code?: string } }) => {
      resolve({ connected: false, message: error.message, code: error.data?.code, described: describeConnectError(error) });
    });
    socket.connect();
  });
}

/** GETs a path over HTTPS, trusting only `ca`, and returns the status and body. */
function httpsGet(url: string, ca: string, token: string | null): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(url, { ca, headers: token === null ? {} : { authorization: `Bearer ${token}` } }, (response) => {
      const parts: Buffer[] = [];
      response.on('data', (part: Buffer) => parts.push(part));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8') }));
    });
    request.on('error', reject);
    request.end();
  });
}

/**
 * Opens a raw TLS connection and sends one HTTP request. Resolves with the
 * first bytes of the response, or with the error that ended the connection
 * before any response, which is the outcome of the TLS layer alone.
 */
function rawTlsRequest(port: number, options: { ca: string; cert?: string; key?: string }): Promise<{ answer: string } | { error: string }> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ...options });
    let answer = '';
    socket.on('secureConnect', () => socket.write('GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'));
    socket.on('data', (part: Buffer) => {
      answer += part.toString('utf8');
    });
    // The first of these settles the promise; a close after an error changes nothing.
    socket.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
    socket.on('close', () => resolve(answer === '' ? { error: 'closed without an answer' } : { answer }));
  });
}

describe.skipIf(!OPENSSL)('coordinator over TLS', () => {
  let pki: TestPki;
  let consortium: TestCa;
  let otherCa: TestCa;
  let server: Issued;
  let siteA: Issued;
  let siteAFromOtherCa: Issued;
  let siteB: Issued;
  let fixture: Fixture | null = null;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    pki = new TestPki();
    consortium = await pki.createCa('consortium-ca');
    otherCa = await pki.createCa('other-ca');
    server = await consortium.issue('server', ['localhost', '127.0.0.1']);
    siteA = await consortium.issue('site', ['site-a']);
    siteAFromOtherCa = await otherCa.issue('site', ['site-a']);
    siteB = await consortium.issue('site', ['site-b']);
  });

  afterAll(() => pki?.cleanup());

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.close();
    await fixture?.cleanup();
    fixture = null;
  });

  function agentSocket(token: string, tls: AgentTls): Socket {
    const socket = createCoordinatorSocket({ url: fixture!.baseUrl, token, tls }, { reconnection: false });
    sockets.push(socket);
    return socket;
  }

  function serverFlags(clientCerts: 'none' | 'optional' | 'required'): string[] {
    const flags = ['--tls-cert', server.certFile, '--tls-key', server.keyFile];
    if (clientCerts !== 'none') flags.push('--tls-ca', consortium.certFile);
    if (clientCerts === 'required') flags.push('--tls-require-client-cert');
    return flags;
  }

  describe('when the coordinator has a certificate of the consortium CA', () => {
    it('accepts an agent that trusts the consortium CA', async () => {
      fixture = await startFixture({ args: serverFlags('none') });
      expect(fixture.baseUrl).toMatch(/^https:\/\//);
      expect(await tryConnect(agentSocket(TOKENS['site-a'], { ca: consortium.cert }))).toEqual({ connected: true });
    });

    it('is rejected by an agent that trusts another CA', async () => {
      fixture = await startFixture({ args: serverFlags('none') });
      const outcome = await tryConnect(agentSocket(TOKENS['site-a'], { ca: otherCa.cert }));
      expect(outcome.connected).toBe(false);
      // The agent aborts in the TLS handshake, so the coordinator never sends a coded error.
      expect(outcome).toMatchObject({ code: undefined });
      // The log names the TLS failure and what to check, not only "websocket error".
      expect(outcome.connected).toBe(false);
      expect((outcome as Extract<ConnectOutcome, { connected: false }>).described).toContain("the coordinator's certificate does not chain to the CA given with --ca");
    });

    it('is rejected by an agent that trusts only the built-in root CAs', async () => {
      fixture = await startFixture({ args: serverFlags('none') });
      const outcome = await tryConnect(agentSocket(TOKENS['site-a'], {}));
      expect(outcome).toMatchObject({ connected: false, code: undefined });
      expect((outcome as Extract<ConnectOutcome, { connected: false }>).described).toContain('--ca is missing');
    });

    it('serves the REST API over HTTPS with the admin token', async () => {
      fixture = await startFixture({ args: serverFlags('none') });
      const overview = await httpsGet(`${fixture.baseUrl}/api/overview`, consortium.cert, ADMIN_TOKEN);
      expect(overview.status).toBe(200);
      expect(JSON.parse(overview.body).experiment).toBe('test');
      expect((await httpsGet(`${fixture.baseUrl}/api/overview`, consortium.cert, null)).status).toBe(401);
    });
  });

  describe('when client certificates are required', () => {
    it('accepts an agent with its site certificate and token', async () => {
      fixture = await startFixture({ args: serverFlags('required') });
      const tls = { ca: consortium.cert, cert: siteA.cert, key: siteA.key };
      expect(await tryConnect(agentSocket(TOKENS['site-a'], tls))).toEqual({ connected: true });
    });

    it('ends a client without a certificate in the TLS handshake', async () => {
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          lines.push(chunk.toString('utf8'));
          callback();
        },
      });
      fixture = await startFixture({ args: serverFlags('required'), logger: pino({ level: 'warn' }, sink) });
      const outcome = await rawTlsRequest(fixture.coordinator.port, { ca: consortium.cert });
      // Under TLS 1.3 the server checks the client certificate after the client's handshake ends,
      // so the client sees an alert, a reset or a bare close, but never an HTTP response.
      expect(outcome).not.toHaveProperty('answer');
      expect((outcome as { error: string }).error).toMatch(/ALERT|ECONNRESET|closed without an answer/);
      expect(await tryConnect(agentSocket(TOKENS['site-a'], { ca: consortium.cert }))).toMatchObject({ connected: false, code: undefined });
      // Two failures from one address within a minute make one log line.
      const failures = lines.filter((line) => line.includes('TLS handshake with 127.0.0.1 failed'));
      expect(failures).toHaveLength(1);
      expect(failures[0]).toContain('peer did not return a certificate');
    });

    it('ends a client with a certificate of another CA in the TLS handshake', async () => {
      fixture = await startFixture({ args: serverFlags('required') });
      const outcome = await rawTlsRequest(fixture.coordinator.port, { ca: consortium.cert, cert: siteAFromOtherCa.cert, key: siteAFromOtherCa.key });
      expect(outcome).not.toHaveProperty('answer');
      expect((outcome as { error: string }).error).toMatch(/ALERT|ECONNRESET|closed without an answer/);
      const tls = { ca: consortium.cert, cert: siteAFromOtherCa.cert, key: siteAFromOtherCa.key };
      expect(await tryConnect(agentSocket(TOKENS['site-a'], tls))).toMatchObject({ connected: false, code: undefined });
    });

    it('answers a client with a consortium certificate at the HTTP layer', async () => {
      fixture = await startFixture({ args: serverFlags('required') });
      const outcome = await rawTlsRequest(fixture.coordinator.port, { ca: consortium.cert, cert: siteA.cert, key: siteA.key });
      expect(outcome).toHaveProperty('answer');
      expect((outcome as { answer: string }).answer).toMatch(/^HTTP\/1\.1 200 /);
    });

    it("rejects a token of another site than the certificate's", async () => {
      fixture = await startFixture({ args: serverFlags('required') });
      const tls = { ca: consortium.cert, cert: siteB.cert, key: siteB.key };
      const outcome = await tryConnect(agentSocket(TOKENS['site-a'], tls));
      expect(outcome).toMatchObject({ connected: false, code: 'auth_certificate_rejected' });
    });
  });

  describe('when client certificates are optional', () => {
    it('accepts an agent without a certificate on its token alone', async () => {
      fixture = await startFixture({ args: serverFlags('optional') });
      expect(await tryConnect(agentSocket(TOKENS['site-a'], { ca: consortium.cert }))).toEqual({ connected: true });
    });

    it('rejects a certificate of another CA at authentication', async () => {
      fixture = await startFixture({ args: serverFlags('optional') });
      const tls = { ca: consortium.cert, cert: siteAFromOtherCa.cert, key: siteAFromOtherCa.key };
      const outcome = await tryConnect(agentSocket(TOKENS['site-a'], tls));
      expect(outcome).toMatchObject({ connected: false, code: 'auth_certificate_rejected' });
    });

    it('binds a certificate to the site it names', async () => {
      fixture = await startFixture({ args: serverFlags('optional') });
      const own = { ca: consortium.cert, cert: siteB.cert, key: siteB.key };
      expect(await tryConnect(agentSocket(TOKENS['site-b'], own))).toEqual({ connected: true });
      expect(await tryConnect(agentSocket(TOKENS['site-a'], own))).toMatchObject({ connected: false, code: 'auth_certificate_rejected' });
    });
  });

  describe('configuration', () => {
    const required = ['--data-dir', '/tmp/covnet', '--initial-model', '/tmp/model.cvnw'];

    it('reads the TLS files from the environment', () => {
      const config = loadConfig(required, {
        COVNET_TLS_CERT: '/etc/covnet/server.pem',
        COVNET_TLS_KEY: '/etc/covnet/server.key',
        COVNET_TLS_CA: '/etc/covnet/ca.pem',
        COVNET_TLS_REQUIRE_CLIENT_CERT: 'true',
      });
      expect(config).toMatchObject({
        tlsCertFile: '/etc/covnet/server.pem',
        tlsKeyFile: '/etc/covnet/server.key',
        tlsCaFile: '/etc/covnet/ca.pem',
        tlsRequireClientCert: true,
      });
    });

    it('rejects a certificate without its key', () => {
      expect(() => loadConfig([...required, '--tls-cert', '/etc/covnet/server.pem'], {})).toThrow(/--tls-cert and --tls-key/);
    });

    it('rejects required client certificates without a CA', () => {
      const flags = [...required, '--tls-cert', 'a.pem', '--tls-key', 'a.key', '--tls-require-client-cert'];
      expect(() => loadConfig(flags, {})).toThrow(/needs --tls-ca/);
    });

    it('rejects an unreadable certificate at start, naming the file', async () => {
      await expect(startFixture({ args: ['--tls-cert', '/nonexistent/server.pem', '--tls-key', server.keyFile] })).rejects.toThrow(
        /--tls-cert \/nonexistent\/server\.pem cannot be read/,
      );
    });

    it('rejects agent TLS files for a plain http URL', () => {
      expect(() => readAgentTls('http://127.0.0.1:8080', { ca: consortium.certFile })).toThrow(AgentTlsError);
      expect(() => readAgentTls('https://127.0.0.1:8080', { cert: siteA.certFile })).toThrow(/--cert and --key must be given together/);
    });
  });
});
