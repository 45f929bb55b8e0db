import { ProtocolError } from './errors';
import { sha256Hex } from './codec';
import { MAX_CHUNK_BYTES } from './version';
import type { PayloadRef } from './messages';

/** Describes a payload for transfer in chunks of at most `chunkBytes`. */
export function describePayload(payload: Uint8Array, chunkBytes = MAX_CHUNK_BYTES): PayloadRef {
  if (chunkBytes <= 0 || chunkBytes > MAX_CHUNK_BYTES) {
    throw new RangeError(`chunkBytes ${chunkBytes} is outside 1..${MAX_CHUNK_BYTES}`);
  }
  return {
    sha256: sha256Hex(payload),
    byteLength: payload.byteLength,
    chunkCount: Math.max(1, Math.ceil(payload.byteLength / chunkBytes)),
    chunkBytes,
  };
}

/** Returns chunk `index` of a payload described by `ref`, as a view without copying. */
export function sliceChunk(payload: Uint8Array, ref: PayloadRef, index: number): Uint8Array {
  if (!Number.isInteger(index) || index < 0 || index >= ref.chunkCount) {
    throw new ProtocolError('invalid_message', `chunk index ${index} is outside 0..${ref.chunkCount - 1}`);
  }
  const start = index * ref.chunkBytes;
  return payload.subarray(start, Math.min(start + ref.chunkBytes, payload.byteLength));
}

/**
 * Reassembles a payload from chunks that arrive in order. A chunk received
 * twice (a retry after a lost acknowledgement) is accepted once and ignored
 * after that, so a sender can resume from `nextIndex`.
 */
export class ChunkAssembler {
  private readonly buffer: Buffer;
  private next = 0;
  private written = 0;

  constructor(
    readonly ref: PayloadRef,
    maxBytes: number,
  ) {
    if (ref.byteLength > maxBytes) {
      throw new ProtocolError('payload_too_large', `payload of ${ref.byteLength} bytes exceeds the limit of ${maxBytes}`);
    }
    const expectedChunks = Math.max(1, Math.ceil(ref.byteLength / ref.chunkBytes));
    if (expectedChunks !== ref.chunkCount) {
      throw new ProtocolError(
        'invalid_message',
        `chunkCount ${ref.chunkCount} does not match ${ref.byteLength} bytes in chunks of ${ref.chunkBytes} (expected ${expectedChunks})`,
      );
    }
    this.buffer = Buffer.alloc(ref.byteLength);
  }

  get nextIndex(): number {
    return this.next;
  }

  get complete(): boolean {
    return this.next === this.ref.chunkCount;
  }

  /** Adds chunk `index`; returns the next index expected. */
  add(index: number, data: Uint8Array): number {
    if (index < this.next) return this.next;
    if (index > this.next) {
      throw new ProtocolError('chunk_out_of_order', `chunk ${index} arrived, expected chunk ${this.next}`);
    }
    const expectedLength = Math.min(this.ref.chunkBytes, this.ref.byteLength - this.written);
    if (data.byteLength !== expectedLength && !(this.ref.byteLength === 0 && data.byteLength === 0)) {
      throw new ProtocolError('invalid_message', `chunk ${index} has ${data.byteLength} bytes, expected ${expectedLength}`);
    }
    this.buffer.set(data, this.written);
    this.written += data.byteLength;
    this.next += 1;
    return this.next;
  }

  /**
   * Returns the whole payload once every chunk has arrived.
   * @throws ProtocolError when chunks are missing or the SHA-256 differs from the announced one.
   */
  finish(): Buffer {
    if (!this.complete) {
      throw new ProtocolError('invalid_message', `payload incomplete: ${this.next} of ${this.ref.chunkCount} chunks received`);
    }
    const actual = sha256Hex(this.buffer);
    if (actual !== this.ref.sha256) {
      throw new ProtocolError('checksum_mismatch', `payload SHA-256 is ${actual}, announced ${this.ref.sha256}`);
    }
    return this.buffer;
  }
}
