import type { Server } from 'node:https';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';

/** Interval within which further TLS handshake failures of one address are counted instead of logged. */
const REPEAT_WINDOW_MS = 60_000;

/**
 * Logs failed TLS handshakes, such as a client certificate of another CA or
 * none where one is required. Node's HTTPS server otherwise drops them
 * silently. One line per address per minute; later lines carry the number
 * of failures left out.
 */
export function logTlsClientErrors(server: Server, logger: Logger): void {
  const lastLogged = new Map<string, { at: number; suppressed: number }>();
  server.on('tlsClientError', (error: Error & { code?: string }, socket: Socket) => {
    const address = socket.remoteAddress ?? 'unknown';
    const now = Date.now();
    const entry = lastLogged.get(address);
    if (entry && now - entry.at < REPEAT_WINDOW_MS) {
      entry.suppressed += 1;
      return;
    }
    if (lastLogged.size >= 10_000) lastLogged.clear();
    lastLogged.set(address, { at: now, suppressed: 0 });
    logger.warn(
      { context: 'tls', address, code: error.code, suppressedSinceLastLine: entry?.suppressed ?? 0 },
      `TLS handshake with ${address} failed: ${error.message}`,
    );
  });
}
