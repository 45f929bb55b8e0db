import { PROTOCOL_VERSION, handshakeAuthSchema, type ErrorCode } from '@covnet/protocol';
import { SITE_NAME_PATTERN } from '../sites/site-tokens';
import type { ClientCertificate } from './client-certificate';

/** A rejected connection: socket.io sends `message` and `data` to the client's connect_error. */
export class HandshakeError extends Error {
  readonly data: { code: ErrorCode; message: string; retryAfterS?: number };

  constructor(code: ErrorCode, message: string, retryAfterS?: number) {
    super(message);
    this.data = retryAfterS === undefined ? { code, message } : { code, message, retryAfterS };
  }

  /** Whether this rejection counts as a failed authentication for the limiter: a token or certificate was presented and did not pass. */
  get isFailedAuthentication(): boolean {
    return ['auth_unknown_token', 'auth_revoked', 'auth_certificate_rejected'].includes(this.data.code);
  }
}

/**
 * Returns the site that a handshake claims in `auth.site`, or else the first
 * name of its verified client certificate, or an empty string. The claim only
 * keys the failed-authentication counts; it proves nothing by itself.
 */
export function claimedSite(auth: unknown, certificate: ClientCertificate): string {
  const site = (auth as { site?: unknown } | null | undefined)?.site;
  if (typeof site === 'string' && SITE_NAME_PATTERN.test(site)) return site;
  if (certificate.state === 'verified') return certificate.names.find((name) => SITE_NAME_PATTERN.test(name)) ?? '';
  return '';
}

/**
 * Checks the handshake `auth` object and the client certificate, and returns the site they authenticate.
 * A verified certificate binds the connection to a site: its subject CN or a
 * DNS subject alternative name must equal the site name of the token.
 * @param authenticate maps a token to its site and whether it is revoked, or to null for an unknown token.
 * @throws HandshakeError `auth_missing_token`, `auth_unknown_token`, `auth_revoked`,
 *   `auth_certificate_rejected` or `auth_protocol_mismatch`.
 */
export async function authenticateHandshake(
  auth: unknown,
  authenticate: (token: string) => Promise<{ site: string; revoked: boolean } | null>,
  certificate: ClientCertificate = { state: 'absent' },
): Promise<string> {
  const token = (auth as { token?: unknown } | null | undefined)?.token;
  if (token === undefined || token === null || token === '') {
    throw new HandshakeError('auth_missing_token', 'authentication failed: no token');
  }
  const parsed = handshakeAuthSchema.safeParse(auth);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue.path.join('.') || '(auth)';
    const code: ErrorCode = field === 'protocolVersion' ? 'auth_protocol_mismatch' : 'auth_unknown_token';
    throw new HandshakeError(code, `authentication failed: handshake field ${field}: ${issue.message}`);
  }
  if (parsed.data.protocolVersion !== PROTOCOL_VERSION) {
    throw new HandshakeError(
      'auth_protocol_mismatch',
      `authentication failed: agent speaks protocol version ${parsed.data.protocolVersion}, this coordinator speaks ${PROTOCOL_VERSION}`,
    );
  }
  if (certificate.state === 'unverified') {
    throw new HandshakeError('auth_certificate_rejected', `authentication failed: the client certificate is not valid for this consortium: ${certificate.reason}`);
  }
  const check = await authenticate(parsed.data.token);
  // A token of another site is reported like an unknown one, so the reply does not confirm that the token is valid.
  if (check === null || (parsed.data.site !== undefined && parsed.data.site !== check.site)) {
    throw new HandshakeError('auth_unknown_token', 'authentication failed: unknown token');
  }
  if (check.revoked) {
    throw new HandshakeError('auth_revoked', `authentication failed: the token of site ${check.site} was revoked; ask the consortium for a new one`);
  }
  if (certificate.state === 'verified' && !certificate.names.includes(check.site)) {
    throw new HandshakeError(
      'auth_certificate_rejected',
      `authentication failed: the client certificate names ${certificate.names.join(', ') || 'no site'}, which is not the site of this token`,
    );
  }
  return check.site;
}
