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
