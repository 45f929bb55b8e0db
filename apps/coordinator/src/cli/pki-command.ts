import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { PkiError, createConsortiumCa, issueCertificate } from './pki';

export const PKI_USAGE = `usage: coordinator pki <ca | server HOST... | site NAME> --out DIR [--ca-dir DIR] [--days N]
  ca            create the consortium CA: DIR/ca.pem and DIR/ca.key (keep ca.key offline)
  server HOST   issue the coordinator's certificate for its host names or IP addresses: DIR/server.pem, DIR/server.key
  site NAME     issue a site agent's client certificate, with NAME as CN and DNS name: DIR/NAME.pem, DIR/NAME.key
  --ca-dir DIR  folder of ca.pem and ca.key, for server and site (default: --out)
  --days N      validity in days (default 3650 for ca, 825 otherwise)
It runs the system openssl; SECURITY.md lists the same commands.`;

interface Output {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** Runs `coordinator pki ...`. Returns the exit status: 0 done, 1 failed (e.g. a file exists), 2 invalid command line. */
export async function pkiCommand(argv: string[], output: Output): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { out: { type: 'string' }, 'ca-dir': { type: 'string' }, days: { type: 'string' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    output.stderr(`coordinator pki: ${(error as Error).message}\n${PKI_USAGE}\n`);
    return 2;
  }
  const [action, ...names] = parsed.positionals;
  const out = parsed.values.out;
  const defaultDays = action === 'ca' ? 3650 : 825;
  const days = parsed.values.days === undefined ? defaultDays : Number(parsed.values.days);
  const usage = (message: string) => {
    output.stderr(`coordinator pki: ${message}\n${PKI_USAGE}\n`);
    return 2;
  };
  if (!['ca', 'server', 'site'].includes(action ?? '')) return usage('expected ca, server HOST... or site NAME');
  if (action === 'ca' && names.length > 0) return usage('ca takes no names');
  if (action !== 'ca' && names.length === 0) return usage(`${action} needs at least one name`);
  if (out === undefined) return usage('--out DIR is required');
  if (!Number.isInteger(days) || days <= 0) return usage(`--days must be a positive integer, got "${parsed.values.days}"`);

  const outDir = resolve(out);
  const caDir = resolve(parsed.values['ca-dir'] ?? out);
  try {
    const files =
      action === 'ca'
        ? await createConsortiumCa(outDir, { commonName: 'COVNet consortium CA', days })
        : await issueCertificate(
            { certFile: resolve(caDir, 'ca.pem'), keyFile: resolve(caDir, 'ca.key') },
            outDir,
            { kind: action as 'server' | 'site', names, days },
          );
    output.stdout(`${files.certFile}\n${files.keyFile}\n`);
    return 0;
  } catch (error) {
    if (!(error instanceof PkiError)) throw error;
    output.stderr(`coordinator pki: ${error.message}\n`);
    return 1;
  }
}
