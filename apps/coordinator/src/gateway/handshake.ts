import { PROTOCOL_VERSION, handshakeAuthSchema, type ErrorCode } from '@covnet/protocol';

/** A rejected connection: socket.io sends `message` and `data` to the client's connect_error. */
export class HandshakeError extends Error {
  readonly data: { code: ErrorCode; message: string };

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.data = { code, message };
  }
}

/**
 * Checks the handshake `auth` object and returns the site it authenticates.
 * @param authenticate maps a token to its site and whether it is revoked, or to null for an unknown token.
 * @throws HandshakeError `auth_missing_token`, `auth_unknown_token`, `auth_revoked` or `auth_protocol_mismatch`.
 */
export async function authenticateHandshake(
  auth: unknown,
  authenticate: (token: string) => Promise<{ site: string; revoked: boolean } | null>,
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
  const check = await authenticate(parsed.data.token);
  if (check === null) throw new HandshakeError('auth_unknown_token', 'authentication failed: unknown token');
  if (check.revoked) {
    throw new HandshakeError('auth_revoked', `authentication failed: the token of site ${check.site} was revoked; ask the consortium for a new one`);
  }
  return check.site;
}
