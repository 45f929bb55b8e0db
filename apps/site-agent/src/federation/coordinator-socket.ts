import { readFileSync } from 'node:fs';
import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client';
import { PROTOCOL_VERSION } from '@covnet/protocol';

/** PEM material for a TLS connection to the coordinator. */
export interface AgentTls {
  /** Consortium CA that the coordinator's certificate must chain to; without it Node's built-in root CAs apply. */
  ca?: string;
  /** Client certificate and its key, for a coordinator that requires mutual TLS. */
  cert?: string;
  key?: string;
}

/** Address of the coordinator and the credentials an agent connects with. */
export interface CoordinatorEndpoint {
  url: string;
  token: string;
  /** Site name sent in the handshake; the coordinator rejects the token if it belongs to another site. */
  site?: string;
  tls?: AgentTls;
}

/**
 * Creates the socket.io client of an agent, not yet connected. The
 * coordinator's certificate is always verified (against `tls.ca` when given),
 * and its host name must match the URL.
 * @param overrides further socket.io options, e.g. `reconnection: false` in tests.
 */
export function createCoordinatorSocket(endpoint: CoordinatorEndpoint, overrides: Partial<ManagerOptions & SocketOptions> = {}): Socket {
  const tls = endpoint.tls ?? {};
  return io(endpoint.url, {
    auth: { token: endpoint.token, protocolVersion: PROTOCOL_VERSION, ...(endpoint.site === undefined ? {} : { site: endpoint.site }) },
    transports: ['websocket'],
    reconnectionDelayMax: 5_000,
    autoConnect: false,
    ...overrides,
    ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    ...(tls.cert === undefined ? {} : { cert: tls.cert }),
    ...(tls.key === undefined ? {} : { key: tls.key }),
    // Set last so that no override can turn certificate checks off.
    rejectUnauthorized: true,
  });
}

/** Error in the agent's TLS settings; the message names the flag. */
export class AgentTlsError extends Error {}

/**
 * Reads the `--ca`, `--cert` and `--key` files of the agent.
 * @throws AgentTlsError when only one of cert and key is given, a file cannot be read or is not PEM,
 *   or TLS files are given for a plain http:// URL.
 */
export function readAgentTls(url: string, files: { ca?: string; cert?: string; key?: string }): AgentTls | undefined {
  if ((files.cert === undefined) !== (files.key === undefined)) throw new AgentTlsError('--cert and --key must be given together');
  if (files.ca === undefined && files.cert === undefined) return undefined;
  if (!/^(https|wss):\/\//i.test(url)) throw new AgentTlsError(`--ca, --cert and --key need an https:// coordinator URL, got ${url}`);
  const read = (flag: string, path: string | undefined): string | undefined => {
    if (path === undefined) return undefined;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new AgentTlsError(`--${flag} ${path} cannot be read: ${(error as Error).message}`);
    }
    if (!text.includes('-----BEGIN ')) throw new AgentTlsError(`--${flag} ${path} is not a PEM file: it has no "-----BEGIN" line`);
    return text;
  };
  return { ca: read('ca', files.ca), cert: read('cert', files.cert), key: read('key', files.key) };
}

// TLS verification failures of Node's tls module that mean the coordinator's certificate does
// not chain to the CA the agent trusts.
const UNTRUSTED_CERTIFICATE_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
]);

/**
 * Describes why a connection to the coordinator failed, for the agent's log. socket.io reports
 * transport failures as "websocket error" or "xhr poll error" and keeps the cause (a TLS or
 * socket error) in `description`, so this reads the cause and adds what a site admin can check.
 */
export function describeConnectError(error: Error & { description?: unknown }): string {
  const cause = underlyingError(error.description);
  if (cause === undefined) return error.message;
  const code = cause.code;
  let hint = '';
  if (code !== undefined && UNTRUSTED_CERTIFICATE_CODES.has(code)) {
    hint = "; the coordinator's certificate does not chain to the CA given with --ca (or --ca is missing)";
  } else if (code === 'CERT_HAS_EXPIRED') {
    hint = "; the coordinator's certificate has expired";
  } else if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    hint = "; the coordinator's certificate does not name the host in the --coordinator URL";
  } else if (code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER') {
    hint = '; check that the --coordinator URL starts with https:// exactly when the coordinator serves TLS';
  } else if (code === 'ECONNRESET') {
    hint = '; the coordinator closed the connection, which it does when it requires a client certificate and --cert/--key are missing or not of the consortium CA';
  }
  return `${error.message}: ${cause.message}${code === undefined ? '' : ` (${code})`}${hint}`;
}

function underlyingError(description: unknown): { message: string; code?: string } | undefined {
  if (description instanceof Error) return { message: description.message, code: (description as NodeJS.ErrnoException).code };
  if (typeof description !== 'object' || description === null) return undefined;
  // The `ws` package wraps the cause in an ErrorEvent-like object with `error` and `message`.
  const wrapped = (description as { error?: unknown }).error;
  if (wrapped instanceof Error) return { message: wrapped.message, code: (wrapped as NodeJS.ErrnoException).code };
  const message = (description as { message?: unknown }).message;
  return typeof message === 'string' ? { message } : undefined;
}
