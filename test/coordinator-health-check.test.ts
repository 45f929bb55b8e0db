import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFixture, type Fixture } from '../apps/coordinator/test/support/fixtures';
import { TestPki, opensslAvailable, type Issued, type TestCa } from '../apps/coordinator/test/support/test-pki';
import { coordinatorArgsOf } from '../apps/coordinator/src/cli/health-check';

const ROOT = join(__dirname, '..');

/** Returns the HEALTHCHECK command of the coordinator image, with /app/ mapped to this repository. */
function imageHealthCommand(): string[] {
  const text = readFileSync(join(ROOT, 'docker/coordinator.Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const line = text.split('\n').find((l) => l.startsWith('HEALTHCHECK'));
  if (!line) throw new Error('docker/coordinator.Dockerfile has no HEALTHCHECK');
  const command = JSON.parse(line.slice(line.indexOf('CMD') + 3).trim()) as string[];
  return command.map((part) => (part.startsWith('/app/') ? join(ROOT, part.slice('/app/'.length)) : part));
}

/**
 * Runs the image's health check as its own process. In the image it reads the
 * coordinator's flags from process 1; here they follow the command, as the
 * entry also accepts them there.
 */
function runHealthCheck(flags: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const [file, ...args] = imageHealthCommand();
  return new Promise((resolve) => {
    execFile(file, [...args, ...flags], { cwd: ROOT, env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      let code = 0;
      if (error) code = typeof error.code === 'number' ? error.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('coordinator image health check', () => {
  let fixture: Fixture | null = null;

  afterEach(async () => {
    await fixture?.cleanup();
    fixture = null;
  });

  /** Flags of the running fixture coordinator, as its process 1 would have them. */
  function flagsOf(f: Fixture, extra: string[]): string[] {
    return ['--host', '127.0.0.1', '--port', String(f.coordinator.port), '--data-dir', f.dataDir, '--initial-model', join(f.dataDir, 'initial.cvnw'), ...extra];
  }

  it('requests /api/health over plain HTTP without TLS', async () => {
    fixture = await startFixture();
    const result = await runHealthCheck(flagsOf(fixture, []));
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`http://127.0.0.1:${fixture.coordinator.port}/api/health returned HTTP 200`);
  });

  it('fails when nothing listens', async () => {
    fixture = await startFixture();
    const flags = flagsOf(fixture, []);
    await fixture.coordinator.close();
    const result = await runHealthCheck(flags);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('ECONNREFUSED');
  });

  describe.skipIf(!opensslAvailable())('over TLS', () => {
    let pki: TestPki;
    let consortium: TestCa;
    let server: Issued;
    let otherServer: Issued;
    let site: Issued;

    beforeAll(async () => {
      pki = new TestPki();
      consortium = await pki.createCa('consortium-ca');
      server = await consortium.issue('server', ['covnet.example.org', 'localhost', '127.0.0.1']);
      otherServer = await consortium.issue('server', ['covnet.example.org', 'localhost', '127.0.0.1']);
      site = await consortium.issue('site', ['healthcheck']);
    });

    afterAll(() => pki?.cleanup());

    it('requests /api/health over HTTPS', async () => {
      const tls = ['--tls-cert', server.certFile, '--tls-key', server.keyFile];
      fixture = await startFixture({ args: tls });
      const result = await runHealthCheck(flagsOf(fixture, tls));
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`https://127.0.0.1:${fixture.coordinator.port}/api/health returned HTTP 200`);
    });

    it('follows the COVNET_TLS variables', async () => {
      fixture = await startFixture({ env: { COVNET_TLS_CERT: server.certFile, COVNET_TLS_KEY: server.keyFile } });
      const result = await runHealthCheck(flagsOf(fixture, []), { COVNET_TLS_CERT: server.certFile, COVNET_TLS_KEY: server.keyFile });
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`https://127.0.0.1:${fixture.coordinator.port}/api/health returned HTTP 200`);
    });

    it('fails when the server presents another certificate', async () => {
      fixture = await startFixture({ args: ['--tls-cert', otherServer.certFile, '--tls-key', otherServer.keyFile] });
      const result = await runHealthCheck(flagsOf(fixture, ['--tls-cert', server.certFile, '--tls-key', server.keyFile]));
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('not the --tls-cert certificate');
    });

    it('presents a client certificate where one is required', async () => {
      const tls = ['--tls-cert', server.certFile, '--tls-key', server.keyFile, '--tls-ca', consortium.certFile, '--tls-require-client-cert'];
      fixture = await startFixture({ args: tls });
      const withCert = await runHealthCheck(flagsOf(fixture, tls), { COVNET_HEALTH_CERT: site.certFile, COVNET_HEALTH_KEY: site.keyFile });
      expect(withCert.code).toBe(0);
      expect(withCert.stdout).toContain('/api/health returned HTTP 200');

      const without = await runHealthCheck(flagsOf(fixture, tls));
      expect(without.code).toBe(0);
      expect(without.stdout).toContain('TLS handshake with the --tls-cert certificate succeeded; /api/health was not requested');
    });
  });
});

describe('coordinatorArgsOf', () => {
  it('takes the flags after the entry point of process 1', () => {
    const cmdline = Buffer.from(['node', '/app/node_modules/.bin/tsx', '/app/apps/coordinator/src/main.ts', '--port', '8443', '--tls-cert', '/etc/c.pem', ''].join('\0'));
    expect(coordinatorArgsOf(cmdline)).toEqual(['--port', '8443', '--tls-cert', '/etc/c.pem']);
  });

  it('returns null for another program', () => {
    expect(coordinatorArgsOf(Buffer.from('postgres\0-D\0/var/lib/postgresql\0'))).toBeNull();
  });
});
