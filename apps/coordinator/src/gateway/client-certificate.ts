import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';

/** Verification state and names of a connection's TLS client certificate. */
export type ClientCertificate =
  | { state: 'absent' }
  | { state: 'unverified'; reason: string }
  | { state: 'verified'; names: string[] };

/**
 * Reads the client certificate of the TLS connection that carried `request`.
 * A plain HTTP connection, or a TLS client that sent none, is `absent`.
 * `verified` means it chains to the consortium CA given with --tls-ca.
 */
export function clientCertificateOf(request: IncomingMessage): ClientCertificate {
  const socket = request.socket;
  if (!(socket instanceof TLSSocket)) return { state: 'absent' };
  const certificate = socket.getPeerCertificate();
  if (!certificate || Object.keys(certificate).length === 0) return { state: 'absent' };
  if (!socket.authorized) return { state: 'unverified', reason: String(socket.authorizationError ?? 'not signed by the consortium CA') };
  return { state: 'verified', names: certificateNames(certificate.subject?.CN, certificate.subjectaltname) };
}

/** Returns the subject common names and the DNS names of the subject alternative name extension. */
export function certificateNames(commonName: string | string[] | undefined, subjectAltName: string | undefined): string[] {
  const names = commonName === undefined ? [] : [commonName].flat();
  for (const entry of (subjectAltName ?? '').split(', ')) {
    if (entry.startsWith('DNS:')) names.push(entry.slice('DNS:'.length));
  }
  // A certificate usually repeats its CN as a DNS name; each name counts once.
  return [...new Set(names)];
}
