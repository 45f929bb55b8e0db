import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { CoordinatorConfig } from '../config/config';

export interface HealthResult {
  healthy: boolean;
  message: string;
}

/**
 * Returns the coordinator flags of a process command line as `/proc/<pid>/cmdline`
 * contains it (NUL-separated): the arguments after the entry `main.ts`, or
 * null when the command line does not run the coordinator.
 */
export function coordinatorArgsOf(cmdline: Buffer): string[] | null {
  const parts = cmdline.toString('utf8').split('\0');
  if (parts.at(-1) === '') parts.pop();
  const entry = parts.findIndex((part) => /(^|\/)apps\/coordinator\/src\/main\.ts$/.test(part));
  return entry < 0 ? null : parts.slice(entry + 1);
}

/** Returns the address to probe: loopback in place of a wildcard address. */
export function probeHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '::1';
  return host;
}

/**
 * Requests `/api/health` of the coordinator that `config` describes, over
 * HTTPS when it has a TLS certificate and key, else over HTTP. Over TLS the
 * server must present the certificate of `--tls-cert`: the probe connects to
 * a loopback address, which the certificate does not name, so the certificate
 * is compared with the configured one instead of checked against a CA.
 * A coordinator that requires client certificates gets the one of
 * COVNET_HEALTH_CERT and COVNET_HEALTH_KEY. Without them the probe checks the
 * TLS handshake and the server's certificate only, because the coordinator
 * rejects the HTTP request.
 */
export async function checkHealth(config: CoordinatorConfig, env: Readonly<Record<string, string | undefined>>, timeoutMs = 4000): Promise<HealthResult> {
  const host = probeHost(config.host);
  const tls = config.tlsCertFile !== null && config.tlsKeyFile !== null;
  const url = `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${config.port}/api/health`;
  if (!tls) return get(url, httpRequest, {}, null, false, timeoutMs);

  let expected: string;
  try {
    expected = new X509Certificate(readFileSync(config.tlsCertFile!)).fingerprint256;
  } catch (error) {
    return { healthy: false, message: `--tls-cert ${config.tlsCertFile} cannot be read as a PEM certificate: ${(error as Error).message}` };
  }
  const clientCertFile = env.COVNET_HEALTH_CERT;
  const clientKeyFile = env.COVNET_HEALTH_KEY;
  const clientOptions: { cert?: Buffer; key?: Buffer } = {};
  if (clientCertFile && clientKeyFile) {
    try {
      clientOptions.cert = readFileSync(clientCertFile);
      clientOptions.key = readFileSync(clientKeyFile);
    } catch (error) {
      return { healthy: false, message: `client certificate of the health check cannot be read: ${(error as Error).message}` };
    }
  }
  const handshakeOnly = config.tlsRequireClientCert && clientOptions.cert === undefined;
  return get(url, httpsRequest, { ...clientOptions, rejectUnauthorized: false }, expected, handshakeOnly, timeoutMs);
}

function get(
  url: string,
  request: typeof httpRequest | typeof httpsRequest,
  tlsOptions: Record<string, unknown>,
  expectedFingerprint: string | null,
  handshakeOnly: boolean,
  timeoutMs: number,
): Promise<HealthResult> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result: HealthResult) => {
      if (settled) return;
      settled = true;
      req.destroy();
      resolve(result);
    };
    const req = request(url, { method: 'GET', timeout: timeoutMs, ...tlsOptions }, (response) => {
      response.resume();
      const status = response.statusCode ?? 0;
      finish({ healthy: status === 200, message: `${url} returned HTTP ${status}` });
    });
    req.on('socket', (socket) => {
      if (expectedFingerprint === null) return;
      socket.once('secureConnect', () => {
        const presented = (socket as TLSSocket).getPeerX509Certificate()?.fingerprint256;
        if (presented !== expectedFingerprint) {
          finish({ healthy: false, message: `${url} presents certificate ${presented ?? '(none)'}, not the --tls-cert certificate ${expectedFingerprint}` });
        } else if (handshakeOnly) {
          finish({
            healthy: true,
            message: `${url}: TLS handshake with the --tls-cert certificate succeeded; /api/health was not requested because the coordinator requires client certificates and COVNET_HEALTH_CERT and COVNET_HEALTH_KEY are not set`,
          });
        }
      });
    });
    req.on('timeout', () => finish({ healthy: false, message: `${url} timed out after ${timeoutMs} ms` }));
    req.on('error', (error) => finish({ healthy: false, message: `${url} failed: ${error.message}` }));
    req.end();
  });
}
