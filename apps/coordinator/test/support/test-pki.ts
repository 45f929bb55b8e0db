import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConsortiumCa, issueCertificate, type CertificateFiles } from '../../src/cli/pki';

/** Checks whether the system `openssl` binary runs; the TLS tests skip with a message without it. */
export function opensslAvailable(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/** PEM files and their text. */
export interface Issued extends CertificateFiles {
  cert: string;
  key: string;
}

export interface TestCa extends Issued {
  /** Issues a coordinator (`server`) or site agent (`site`) certificate signed by this CA. */
  issue(kind: 'server' | 'site', names: string[]): Promise<Issued>;
}

/** A throwaway public key infrastructure made by `coordinator pki`'s functions, with certificates valid for two days. */
export class TestPki {
  readonly dir = mkdtempSync(join(tmpdir(), 'covnet-pki-'));
  private folders = 0;

  async createCa(name: string): Promise<TestCa> {
    const files = await createConsortiumCa(join(this.dir, name), { commonName: name, days: 2 });
    return {
      ...read(files),
      issue: async (kind, names) => read(await issueCertificate(files, join(this.dir, `issued-${this.folders++}`), { kind, names, days: 2 })),
    };
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function read(files: CertificateFiles): Issued {
  return { ...files, cert: readFileSync(files.certFile, 'utf8'), key: readFileSync(files.keyFile, 'utf8') };
}
