import { request as httpRequest } from 'node:http';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io } from 'socket.io-client';
import { PROTOCOL_VERSION } from '@covnet/protocol';
import { MAX_SOCKET_PACKET_BYTES } from '../src/gateway/socket-io-adapter';
import { ADMIN_TOKEN, TOKENS, getJson, startFixture, type Fixture } from './support/fixtures';

/** Content of a file in the data dir, outside the checkpoint folder, that no response may contain. */
const SENTINEL = 'sentinel-outside-the-checkpoint-folder-7f3a';

/** Path segments that try to leave a folder or break a parser, as they appear on the wire. */
const HOSTILE_SEGMENTS = [
  '..',
  '..%2F..%2Fsentinel.txt',
  '%2e%2e%2f%2e%2e%2fsentinel.txt',
  '%2E%2E%5C%2E%2E%5Csentinel.txt',
  '%252e%252e%252fsentinel.txt',
  '.sentinel',
  '%00',
  'site-a%00',
  '%zz',
  '-1',
  '1e3',
  '%201',
  'x'.repeat(4096),
];

/** Valid values of the path parameters, used while another parameter of the same route is hostile. */
const BENIGN: Record<string, string> = { n: '1', version: '0', name: 'test', action: 'pause' };

/** Sends a request with the path exactly as given, so that no client library normalises `..` away. */
function rawRequest(port: number, method: string, path: string, body?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { authorization: `Bearer ${ADMIN_TOKEN}` };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = body.byteLength;
    }
    const request = httpRequest({ host: '127.0.0.1', port, method, path, headers }, (response) => {
      const parts: Buffer[] = [];
      response.on('data', (part: Buffer) => parts.push(part));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(parts).toString('latin1') }));
    });
    // The server may send 413 and close before the whole body is sent.
    request.on('error', (error: NodeJS.ErrnoException) => (error.code === 'EPIPE' || error.code === 'ECONNRESET' ? undefined : reject(error)));
    request.end(body);
  });
}

interface Operation {
  method: string;
  template: string;
  pathParameters: string[];
  takesExperimentQuery: boolean;
}

describe('request validation on every route', () => {
  let fixture: Fixture;
  let operations: Operation[];

  beforeAll(async () => {
    fixture = await startFixture({ beforeStart: (dataDir) => writeFile(join(dataDir, 'sentinel.txt'), SENTINEL) });
    const docs = await getJson(`${fixture.baseUrl}/api/docs-json`, null);
    operations = [];
    for (const [template, methods] of Object.entries(docs.body.paths as Record<string, Record<string, { parameters?: { name: string; in: string }[] }>>)) {
      for (const [method, operation] of Object.entries(methods)) {
        const parameters = operation.parameters ?? [];
        operations.push({
          method: method.toUpperCase(),
          template,
          pathParameters: parameters.filter((p) => p.in === 'path').map((p) => p.name),
          takesExperimentQuery: parameters.some((p) => p.in === 'query' && p.name === 'experiment'),
        });
      }
    }
  });

  afterAll(async () => {
    await fixture?.cleanup();
  });

  function fill(template: string, values: Record<string, string>): string {
    return template.replace(/\{(\w+)\}/g, (_match, name: string) => values[name] ?? BENIGN[name]);
  }

  it('finds the routes in the OpenAPI document', () => {
    const routes = operations.map((o) => `${o.method} ${o.template}`);
    expect(routes).toContain('GET /api/models/{version}/download');
    expect(routes).toContain('POST /api/experiments/{name}/{action}');
    expect(routes).toContain('POST /api/sites/{name}/revoke');
    expect(operations.filter((o) => o.pathParameters.length > 0).length).toBeGreaterThanOrEqual(5);
  });

  it('rejects hostile path parameters with 400 or 404', async () => {
    let checked = 0;
    for (const operation of operations) {
      for (const parameter of operation.pathParameters) {
        for (const segment of HOSTILE_SEGMENTS) {
          const path = fill(operation.template, { [parameter]: segment });
          const response = await rawRequest(fixture.coordinator.port, operation.method, path);
          expect([400, 404], `${operation.method} ${path.slice(0, 120)}: ${response.body.slice(0, 200)}`).toContain(response.status);
          expect(response.body.includes(SENTINEL), path.slice(0, 120)).toBe(false);
          checked += 1;
        }
      }
    }
    expect(checked).toBeGreaterThanOrEqual(5 * HOSTILE_SEGMENTS.length);
  });

  it('rejects hostile experiment queries with 400 or 404', async () => {
    const queries = [...HOSTILE_SEGMENTS.map((segment) => `experiment=${segment}`), 'experiment=test&experiment=other'];
    let checked = 0;
    for (const operation of operations.filter((o) => o.takesExperimentQuery)) {
      for (const query of queries) {
        const path = `${fill(operation.template, {})}?${query}`;
        const response = await rawRequest(fixture.coordinator.port, operation.method, path);
        expect([400, 404], `${operation.method} ${path.slice(0, 120)}: ${response.body.slice(0, 200)}`).toContain(response.status);
        expect(response.body.includes(SENTINEL)).toBe(false);
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(6 * queries.length);
  });

  it('returns 431 for an id beyond the header limit', async () => {
    // Node's HTTP parser accepts 16 KiB of request line and headers by default.
    const response = await rawRequest(fixture.coordinator.port, 'GET', `/api/rounds/${'9'.repeat(20_000)}`);
    expect(response.status).toBe(431);
  });

  it('rejects every JSON body over 64 KiB with 413', async () => {
    const body = Buffer.from(JSON.stringify({ name: 'site-z', padding: 'x'.repeat(64 * 1024) }));
    const posts = operations.filter((o) => o.method === 'POST');
    expect(posts.length).toBeGreaterThanOrEqual(3);
    for (const operation of posts) {
      const response = await rawRequest(fixture.coordinator.port, 'POST', fill(operation.template, {}), body);
      expect(response.status, operation.template).toBe(413);
    }
    // Nothing was created or revoked: site-z is unknown and site-a still active.
    const sites = await getJson(`${fixture.baseUrl}/api/sites`);
    expect(sites.body.map((site: { name: string }) => site.name)).not.toContain('site-z');
    expect(sites.body.find((site: { name: string }) => site.name === 'site-a').revokedAt).toBeNull();
  });

  it('accepts a JSON body just under 64 KiB', async () => {
    const padding = 'x'.repeat(60 * 1024);
    const body = Buffer.from(JSON.stringify({ name: 'bad name', padding }));
    const response = await rawRequest(fixture.coordinator.port, 'POST', '/api/sites', body);
    // Parsed and then rejected for its name, not for its size.
    expect(response.status).toBe(400);
    expect(response.body).toContain('site name');
  });

  it('serves no file outside the dashboard folder', async () => {
    for (const path of ['/dashboard/..%2f..%2fcoordinator.module.ts', '/dashboard/%2e%2e/%2e%2e/coordinator.module.ts', '/dashboard/..%5c..%5ccoordinator.module.ts']) {
      const response = await rawRequest(fixture.coordinator.port, 'GET', path);
      expect([400, 403, 404], path).toContain(response.status);
      expect(response.body.includes('CoordinatorModule'), path).toBe(false);
    }
  });

  it('closes a socket that sends an oversized packet', async () => {
    const socket = io(fixture.baseUrl, { auth: { token: TOKENS['site-a'], protocolVersion: PROTOCOL_VERSION }, transports: ['websocket'], reconnection: false });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', reject);
      });
      const closed = new Promise<string>((resolve) => socket.once('disconnect', (reason) => resolve(reason)));
      socket.emit('site:hello', { padding: 'x'.repeat(MAX_SOCKET_PACKET_BYTES + 1) });
      expect(await closed).toBe('transport close');
    } finally {
      socket.close();
    }
    expect((await getJson(`${fixture.baseUrl}/api/health`, null)).status).toBe(200);
  });
});
