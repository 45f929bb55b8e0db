import type { Socket } from 'socket.io-client';
import {
  AGENT_EVENTS,
  ChunkAssembler,
  describePayload,
  sliceChunk,
  type PayloadRef,
} from '@covnet/protocol';
import { request } from './socket-call';

/** Largest global model an agent accepts, as a guard against a runaway transfer. */
const MAX_MODEL_BYTES = 1024 * 1024 * 1024;

/**
 * Downloads global model `version` chunk by chunk and checks its SHA-256.
 * @throws ProtocolError `checksum_mismatch` when the bytes differ from `ref`.
 */
export async function downloadModel(socket: Socket, experiment: string, version: number, ref: PayloadRef): Promise<Buffer> {
  const assembler = new ChunkAssembler(ref, MAX_MODEL_BYTES);
  while (!assembler.complete) {
    const index = assembler.nextIndex;
    const reply = await request<{ data: Uint8Array }>(socket, AGENT_EVENTS.modelChunk, { experiment, version, index });
    assembler.add(index, new Uint8Array(reply.data));
  }
  return assembler.finish();
}

export interface UpdateHeader {
  experiment: string;
  round: number;
  modelVersion: number;
  numExamples: number;
  trainLoss: number;
}

/**
 * Uploads a local update in chunks and commits it. The coordinator returns
 * the next chunk it expects, so a resent `update:begin` after a reconnect
 * resumes where the acknowledged chunks end.
 */
export async function uploadUpdate(socket: Socket, header: UpdateHeader, payload: Buffer): Promise<void> {
  const ref = describePayload(payload);
  const begun = await request<{ uploadId: string; nextIndex: number }>(socket, AGENT_EVENTS.updateBegin, {
    ...header,
    payload: ref,
  });
  let index = begun.nextIndex;
  while (index < ref.chunkCount) {
    const reply = await request<{ nextIndex: number }>(socket, AGENT_EVENTS.updateChunk, {
      uploadId: begun.uploadId,
      index,
      data: sliceChunk(payload, ref, index),
    });
    index = reply.nextIndex;
  }
  await request<{ accepted: true }>(socket, AGENT_EVENTS.updateCommit, { uploadId: begun.uploadId });
}
