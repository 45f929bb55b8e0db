import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Whether the system `openssl` binary runs; the TLS tests skip with a message without it. */
export function opensslAvailable(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

export interface Issued {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

export interface TestCa extends Issued {
  /** Issues a certificate signed by this CA with the given subject CN and extension lines. */
  issue(name: string, commonName: string, extensions: string[]): Issued;
}

/**
 * A throwaway public key infrastructure made with the system `openssl`, the
 * same commands SECURITY.md gives for a consortium: P-256 keys, a
 * self-signed CA, and leaf certificates valid for two days.
 */
export class TestPki {
  readonly dir = mkdtempSync(join(tmpdir(), 'covnet-pki-'));
  private serial = 1;

  createCa(name: string): TestCa {
    const keyFile = join(this.dir, `${name}.key`);
    const certFile = join(this.dir, `${name}.pem`);
    this.openssl([
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    return {
      ...this.read(certFile, keyFile),
      issue: (leaf, commonName, extensions) => this.issue(certFile, keyFile, leaf, commonName, extensions),
    };
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private issue(caCert: string, caKey: string, name: string, commonName: string, extensions: string[]): Issued {
    const keyFile = join(this.dir, `${name}.key`);
    const csrFile = join(this.dir, `${name}.csr`);
    const certFile = join(this.dir, `${name}.pem`);
    const extFile = join(this.dir, `${name}.ext`);
    writeFileSync(extFile, ['basicConstraints=CA:FALSE', ...extensions].join('\n') + '\n');
    this.openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', csrFile, '-subj', `/CN=${commonName}`]);
    this.openssl([
      'x509', '-req', '-in', csrFile, '-CA', caCert, '-CAkey', caKey, '-set_serial', String(this.serial++),
      '-days', '2', '-sha256', '-extfile', extFile, '-out', certFile,
    ]);
    return this.read(certFile, keyFile);
  }

  private read(certFile: string, keyFile: string): Issued {
    return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
  }

  private openssl(args: string[]): void {
    execFileSync('openssl', args, { stdio: 'pipe' });
  }
}
