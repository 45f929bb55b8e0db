import type { Socket } from 'socket.io-client';
import { ProtocolError, type Ack, type ErrorCode } from '@covnet/protocol';

/** Failure of a request that the coordinator rejected with a coded reason. */
export class RejectedError extends ProtocolError {}

/**
 * Emits an event and waits for its acknowledgement.
 * @throws RejectedError when the coordinator answers `{ok: false}`;
 * Error when the socket is not connected, or no acknowledgement arrives
 * within `timeoutMs` (socket.io's own timeout).
 */
export async function request<T extends object>(
  socket: Socket,
  event: string,
  payload: unknown,
  timeoutMs = 60_000,
): Promise<T> {
  // socket.io would buffer the message and send it on the next connection
  // ahead of that connection's site:hello, which the coordinator requires
  // first. The caller retries instead.
  if (!socket.connected) throw new Error(`${event}: not connected to the coordinator`);
  let reply: Ack<T>;
  try {
    reply = (await socket.timeout(timeoutMs).emitWithAck(event, payload)) as Ack<T>;
  } catch (error) {
    throw new Error(`${event}: no acknowledgement from the coordinator within ${timeoutMs} ms (${(error as Error).message})`);
  }
  if (!reply || typeof reply !== 'object') throw new Error(`${event}: malformed acknowledgement`);
  if (!reply.ok) throw new RejectedError(reply.error.code as ErrorCode, `${event}: ${reply.error.code}: ${reply.error.message}`);
  return reply;
}
