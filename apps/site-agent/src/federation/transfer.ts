import type { Socket } from 'socket.io-client';
import {
  AGENT_EVENTS,
  ChunkAssembler,
  describePayload,
  sliceChunk,
  type PayloadRef,
  type UpdateBeginReply,
  type UpdateCommitReply,
} from '@covnet/protocol';
import { RejectedError, request } from './socket-call';
import { log } from '../log';

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
 * @returns whether the coordinator had already accepted this very update, e.g. when
 * the acknowledgement of an earlier commit was lost.
 */
export async function uploadUpdate(socket: Socket, header: UpdateHeader, payload: Buffer, chunkBytes?: number): Promise<{ duplicate: boolean }> {
  const ref = describePayload(payload, chunkBytes);
  const begun = await request<UpdateBeginReply>(socket, AGENT_EVENTS.updateBegin, {
    ...header,
    payload: ref,
  });
  if (begun.duplicate) return { duplicate: true };
  let index = begun.nextIndex;
  while (index < ref.chunkCount) {
    const reply = await request<{ nextIndex: number }>(socket, AGENT_EVENTS.updateChunk, {
      uploadId: begun.uploadId,
      index,
      data: sliceChunk(payload, ref, index),
    });
    index = reply.nextIndex;
  }
  const committed = await request<UpdateCommitReply>(socket, AGENT_EVENTS.updateCommit, { uploadId: begun.uploadId });
  return { duplicate: committed.duplicate === true };
}

// Rejections after which sending the same update again can succeed: the
// upload was lost with a coordinator restart, or the coordinator failed.
const RETRIED_REJECTIONS: ReadonlySet<string> = new Set(['unknown_upload', 'chunk_out_of_order', 'duplicate_update', 'internal_error']);
const MAX_UPLOAD_ATTEMPTS = 5;

/**
 * Uploads an update, and after a lost connection or a lost upload waits
 * with `rejoined` and sends it again. The coordinator resumes an unfinished
 * upload and acknowledges one it has already accepted as a duplicate, so
 * sending again never counts an update twice.
 * @param rejoined resolves once the agent is connected and has sent its hello again; called with a back-off delay in ms.
 * @param chunkBytes upload chunk size (default and maximum MAX_CHUNK_BYTES).
 * @throws RejectedError when the coordinator rejects the update for good
 * (e.g. `stale_round`), or the last error after MAX_UPLOAD_ATTEMPTS attempts.
 */
export async function uploadUntilAccepted(
  socket: Socket,
  header: UpdateHeader,
  payload: Buffer,
  rejoined: (delayMs: number) => Promise<void>,
  chunkBytes?: number,
): Promise<{ duplicate: boolean }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await uploadUpdate(socket, header, payload, chunkBytes);
    } catch (error) {
      const retried = !(error instanceof RejectedError) || RETRIED_REJECTIONS.has(error.code);
      if (!retried || attempt >= MAX_UPLOAD_ATTEMPTS) throw error;
      log.warn({ round: header.round, attempt, error: (error as Error).message }, 'sending the update failed; sending it again once joined');
      await rejoined(attempt * 1_000);
    }
  }
}
