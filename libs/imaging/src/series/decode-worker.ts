import { parentPort } from 'node:worker_threads';
import { DicomReadError } from '../dicom/errors';
import { readCtFile } from '../dicom/read-slice';
import type { DecodeReply, DecodeRequest, DecodedFile } from './decode-pool';

// Reads, parses and decodes the files of one request in order, and sends the HU frames back
// as transferred buffers, so no pixel is copied between threads.
parentPort!.on('message', (request: DecodeRequest) => {
  decode(request).then(
    (reply) => parentPort!.postMessage(reply, reply.ok ? reply.files.flatMap((f) => f.frames.map((frame) => frame.buffer as ArrayBuffer)) : []),
    (error: Error) => parentPort!.postMessage({ id: request.id, ok: false, error: serialise(error) } satisfies DecodeReply),
  );
});

async function decode(request: DecodeRequest): Promise<DecodeReply> {
  const files: DecodedFile[] = [];
  for (const path of request.files) {
    const file = await readCtFile(path, request.limits);
    const frames = file.headers.map((_, frame) => {
      const hu = file.decodeFrame(frame);
      // Only a whole buffer can be transferred.
      return hu.byteOffset === 0 && hu.byteLength === hu.buffer.byteLength ? hu : hu.slice();
    });
    files.push({ path, headers: file.headers, frames });
  }
  return { id: request.id, ok: true, files };
}

function serialise(error: Error): Extract<DecodeReply, { ok: false }>['error'] {
  if (error instanceof DicomReadError) {
    return { kind: 'dicom', code: error.code, path: error.path, tag: error.tag, reason: error.reason };
  }
  return { kind: 'other', message: error.message };
}
