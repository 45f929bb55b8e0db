import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pkiCommand } from '../src/cli/pki-command';
import { opensslAvailable } from './support/test-pki';

const OPENSSL = opensslAvailable();
if (!OPENSSL) console.warn('pki-command.test.ts: skipped, the system `openssl` binary is missing and `coordinator pki` runs it');

async function runPki(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await pkiCommand(args, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text) });
  return { code, stdout, stderr };
}

/** Runs openssl as the independent check of what `coordinator pki` wrote. */
function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: 'pipe' });
}

describe.skipIf(!OPENSSL)('coordinator pki', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'covnet-pki-command-'));
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('issues certificates that chain to the consortium CA', async () => {
    expect((await runPki(['ca', '--out', dir])).code).toBe(0);
    const site = await runPki(['site', 'hospital-a', '--out', join(dir, 'sites'), '--ca-dir', dir]);
    expect(site.code).toBe(0);
    expect(site.stdout).toBe(`${join(dir, 'sites', 'hospital-a.pem')}\n${join(dir, 'sites', 'hospital-a.key')}\n`);
    expect((await runPki(['server', 'covnet.example.org', '127.0.0.1', '--out', join(dir, 'server'), '--ca-dir', dir])).code).toBe(0);

    const siteCert = join(dir, 'sites', 'hospital-a.pem');
    const serverCert = join(dir, 'server', 'server.pem');
    expect(openssl(['verify', '-CAfile', join(dir, 'ca.pem'), siteCert, serverCert])).toBe(`${siteCert}: OK\n${serverCert}: OK\n`);
    const siteText = openssl(['x509', '-in', siteCert, '-noout', '-subject', '-ext', 'subjectAltName,extendedKeyUsage']);
    expect(siteText).toContain('subject=CN = hospital-a');
    expect(siteText).toContain('DNS:hospital-a');
    expect(siteText).toContain('TLS Web Client Authentication');
    const serverText = openssl(['x509', '-in', serverCert, '-noout', '-ext', 'subjectAltName,extendedKeyUsage']);
    expect(serverText).toContain('DNS:covnet.example.org, IP Address:127.0.0.1');
    expect(serverText).toContain('TLS Web Server Authentication');
    for (const key of [join(dir, 'ca.key'), join(dir, 'sites', 'hospital-a.key'), join(dir, 'server', 'server.key')]) {
      expect(statSync(key).mode & 0o777, key).toBe(0o600);
    }
  });

  it('keeps an existing CA', async () => {
    expect((await runPki(['ca', '--out', dir])).code).toBe(0);
    const before = readFileSync(join(dir, 'ca.pem'), 'utf8');
    const again = await runPki(['ca', '--out', dir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already exists');
    expect(readFileSync(join(dir, 'ca.pem'), 'utf8')).toBe(before);
  });

  it('rejects an invalid site name', async () => {
    expect((await runPki(['ca', '--out', dir])).code).toBe(0);
    const result = await runPki(['site', '../escape', '--out', dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('site name "../escape" is invalid');
  });

  it('rejects a command line without --out', async () => {
    const result = await runPki(['ca']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--out DIR is required');
  });
});
