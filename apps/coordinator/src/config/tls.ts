import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { ServerOptions } from 'node:https';
import { ConfigError, type CoordinatorConfig } from './config';

/**
 * Reads the certificate, key and CA files of the configuration into the
 * options of Node's HTTPS server, or returns null for plain HTTP.
 *
 * With a CA the server requests a client certificate. With
 * `tlsRequireClientCert` the TLS handshake fails for a client without one
 * that chains to the CA. Without it the handshake succeeds either way, and
 * the federation gateway rejects an agent whose certificate did not verify.
 * @throws ConfigError naming the file that cannot be read.
 */
export async function httpsOptionsOf(config: CoordinatorConfig): Promise<ServerOptions | null> {
  if (config.tlsCertFile === null || config.tlsKeyFile === null) return null;
  const options: ServerOptions = {
    cert: await readPem('--tls-cert', config.tlsCertFile),
    key: await readPem('--tls-key', config.tlsKeyFile),
    minVersion: 'TLSv1.2',
  };
  if (config.tlsCaFile !== null) {
    options.ca = await readPem('--tls-ca', config.tlsCaFile);
    options.requestCert = true;
    options.rejectUnauthorized = config.tlsRequireClientCert;
  }
  return options;
}

async function readPem(flag: string, path: string): Promise<Buffer> {
  let text: Buffer;
  try {
    text = await readFile(path);
  } catch (error) {
    throw new ConfigError(`${flag} ${path} cannot be read: ${(error as Error).message}`);
  }
  if (!text.includes('-----BEGIN ')) throw new ConfigError(`${flag} ${path} is not a PEM file: it has no "-----BEGIN" line`);
  return text;
}

/** Returns whether `host` names only the loopback interface, so that plain HTTP on it stays on this machine. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}
