import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SITE_NAME_PATTERN } from '../sites/site-tokens';

const run = promisify(execFile);

const HOST_NAME_PATTERN = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

/** A certificate and its private key, as PEM files. */
export interface CertificateFiles {
  certFile: string;
  keyFile: string;
}

/** Error of `coordinator pki`, such as a missing openssl, an existing file or an invalid name, named in the message. */
export class PkiError extends Error {
  override name = 'PkiError';
}

/**
 * Creates a self-signed consortium CA with a P-256 key in `outDir/ca.pem` and `outDir/ca.key` (mode 0600).
 * Node.js has no API to issue X.509 certificates, so this runs the system `openssl`.
 * @throws PkiError when openssl is missing or fails, or either file exists.
 */
export async function createConsortiumCa(outDir: string, options: { commonName: string; days: number }): Promise<CertificateFiles> {
  const files = { certFile: join(outDir, 'ca.pem'), keyFile: join(outDir, 'ca.key') };
  await prepare(outDir, files);
  await openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', files.keyFile, '-out', files.certFile, '-days', String(options.days), '-subj', `/CN=${options.commonName}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await chmod(files.keyFile, 0o600);
  return files;
}

/**
 * Issues a certificate signed by `ca` into `outDir/<file name>.pem` and `.key` (mode 0600).
 * A `server` certificate is for the coordinator: `names` are its host names or
 * IP addresses, all in the subject alternative name, and the file name is `server`.
 * A `site` certificate is a site agent's client certificate: `names` is the
 * site name alone, as subject CN and DNS name, which the coordinator compares
 * with the site of the token, and the file name is the site name.
 * @throws PkiError for an invalid site name, an existing file, or a failing openssl.
 */
export async function issueCertificate(
  ca: CertificateFiles,
  outDir: string,
  options: { kind: 'server' | 'site'; names: string[]; days: number; fileName?: string },
): Promise<CertificateFiles> {
  const [commonName] = options.names;
  if (commonName === undefined) throw new PkiError('a certificate needs at least one name');
  if (options.kind === 'site' && (options.names.length !== 1 || !SITE_NAME_PATTERN.test(commonName))) {
    throw new PkiError(`site name "${options.names.join(' ')}" is invalid: expected one name of 1-64 letters, digits, dot, dash or underscore`);
  }
  const invalidHost = options.names.find((name) => isIP(name) === 0 && !HOST_NAME_PATTERN.test(name));
  if (options.kind === 'server' && invalidHost !== undefined) {
    throw new PkiError(`host name "${invalidHost}" is invalid: expected an IP address or letters, digits, dots and dashes`);
  }

  const base = options.fileName ?? (options.kind === 'server' ? 'server' : commonName);
  const files = { certFile: join(outDir, `${base}.pem`), keyFile: join(outDir, `${base}.key`) };
  await prepare(outDir, files);

  const subjectAltName = options.names.map((name) => (isIP(name) ? `IP:${name}` : `DNS:${name}`)).join(',');
  const extensions = [
    'basicConstraints=CA:FALSE',
    `subjectAltName=${subjectAltName}`,
    `extendedKeyUsage=${options.kind === 'server' ? 'serverAuth' : 'clientAuth'}`,
  ];
  const csrFile = join(outDir, `${base}.csr`);
  const extFile = join(outDir, `${base}.ext`);
  try {
    await writeFile(extFile, `${extensions.join('\n')}\n`);
    await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', files.keyFile, '-out', csrFile, '-subj', `/CN=${commonName}`]);
    await chmod(files.keyFile, 0o600);
    await openssl([
      'x509', '-req', '-in', csrFile, '-CA', ca.certFile, '-CAkey', ca.keyFile,
      // A random 128-bit serial, so that certificates of one CA never share one without a serial file.
      '-set_serial', `0x${randomBytes(16).toString('hex')}`,
      '-days', String(options.days), '-sha256', '-extfile', extFile, '-out', files.certFile,
    ]);
  } finally {
    await rm(csrFile, { force: true });
    await rm(extFile, { force: true });
  }
  return files;
}

/** Creates `outDir` and rejects files that already exist, so that no key is overwritten. */
async function prepare(outDir: string, files: CertificateFiles): Promise<void> {
  await mkdir(outDir, { recursive: true });
  for (const path of [files.certFile, files.keyFile]) {
    const exists = await access(path).then(
      () => true,
      () => false,
    );
    if (exists) throw new PkiError(`${path} already exists: move it away or choose another --out folder`);
  }
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT') {
      throw new PkiError('openssl was not found on PATH: install OpenSSL, or run the openssl commands in SECURITY.md by hand');
    }
    throw new PkiError(`openssl ${args[0]} failed: ${(failure.stderr ?? failure.message).trim()}`);
  }
}
