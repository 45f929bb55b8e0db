import { IoAdapter } from '@nestjs/platform-socket.io';
import type { ServerOptions } from 'socket.io';
import { MAX_CHUNK_BYTES } from '@covnet/protocol';

/**
 * Largest socket.io packet the coordinator accepts, in bytes: one weight
 * chunk, sent as a binary attachment, plus 64 KiB for the JSON messages,
 * whose largest, `metrics:report`, is about 10 KiB. A larger packet closes
 * the connection before it is buffered whole.
 */
export const MAX_SOCKET_PACKET_BYTES = MAX_CHUNK_BYTES + 64 * 1024;

/** Nest's socket.io adapter with the packet size limit applied to every server it creates. */
export class LimitedIoAdapter extends IoAdapter {
  override createIOServer(port: number, options?: ServerOptions): unknown {
    return super.createIOServer(port, { ...options, maxHttpBufferSize: MAX_SOCKET_PACKET_BYTES } as ServerOptions);
  }
}
