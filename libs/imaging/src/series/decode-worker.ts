import { parentPort } from 'node:worker_threads';
import { DicomReadError } from '../dicom/errors';
import { readCtFile, type CtFile } from '../dicom/read-slice';
import type { DecodeReply, DecodeRequest } from './decode-pool';
import { readSliceStats } from './scan-file';

// Files parsed for each batch, by their index in the batch, parsedFiles until the batch is decoded or released.
const batches = new Map<number, Map<number, CtFile>>();

parentPort!.on('message', (request: DecodeRequest) => {
  handle(request).then(
    (reply) => parentPort!.postMessage(reply),
    (error: Error) => parentPort!.postMessage({ id: request.id, ok: false, error: serialise(error) } satisfies DecodeReply),
  );
});

async function handle(request: DecodeRequest): Promise<DecodeReply> {
  switch (request.kind) {
    case 'scan': {
      parentPort!.postMessage({ id: request.id, started: true, path: request.path } satisfies DecodeReply);
      const scanned = await readSliceStats(request.path, request.limits, request.headersOnly, 'blocking');
      return { id: request.id, ok: true, scanned };
    }
    case 'parse': {
      const parsedFiles = new Map<number, CtFile>();
      batches.set(request.batch, parsedFiles);
      const files = [];
      for (const [k, path] of request.files.entries()) {
        parentPort!.postMessage({ id: request.id, started: true, path } satisfies DecodeReply);
        const file = await readCtFile(path, request.limits, 'blocking');
        parsedFiles.set(request.first + k, file);
        files.push({ path, headers: file.headers });
      }
      return { id: request.id, ok: true, files };
    }
    case 'decode': {
      const parsedFiles = batches.get(request.batch);
      batches.delete(request.batch);
      if (parsedFiles === undefined) throw new Error(`decode batch ${request.batch} is unknown or already decoded`);
      const values = new Float32Array(request.target);
      let current: CtFile | undefined;
      for (const { file, frame, at } of request.placements) {
        const parsed = parsedFiles.get(file);
        if (parsed === undefined) throw new Error(`file ${file} of decode batch ${request.batch} was not parsed by this worker`);
        if (parsed !== current) {
          parentPort!.postMessage({ id: request.id, started: true, path: parsed.path } satisfies DecodeReply);
          current = parsed;
        }
        const size = parsed.headers[frame].rows * parsed.headers[frame].columns;
        parsed.decodeFrame(frame, values.subarray(at, at + size));
      }
      return { id: request.id, ok: true };
    }
    case 'release':
      batches.delete(request.batch);
      return { id: request.id, ok: true };
  }
}

function serialise(error: Error): Extract<DecodeReply, { ok: false }>['error'] {
  if (error instanceof DicomReadError) {
    return { kind: 'dicom', code: error.code, path: error.path, tag: error.tag, reason: error.reason };
  }
  return { kind: 'other', message: error.message };
}
