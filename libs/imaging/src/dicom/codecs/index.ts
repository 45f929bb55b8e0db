import { Decoder as JpegLosslessDecoder } from 'jpeg-lossless-decoder-js';
import type { PixelEncoding } from '../transfer-syntax';
import { decodeRleFrame } from './rle';

/** Frame size and sample width that a codec checks its output against. */
export interface FrameGeometry {
  rows: number;
  columns: number;
  bitsAllocated: 8 | 16;
}

// The Emscripten decoders of @cornerstonejs/codec-*: each exposes a class with
// getEncodedBuffer(length), decode(), getFrameInfo() and getDecodedBuffer().
interface WasmFrameInfo {
  width: number;
  height: number;
  bitsPerSample: number;
  componentCount: number;
}
interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  decode(): void;
  getFrameInfo(): WasmFrameInfo;
  getDecodedBuffer(): Uint8Array;
  delete(): void;
}
type WasmModule = Record<string, new () => WasmDecoder>;

const WASM_CODECS = {
  'jpeg-baseline': { module: '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs', decoder: 'JPEGDecoder' },
  'jpeg-ls': { module: '@cornerstonejs/codec-charls/decodewasmjs', decoder: 'JpegLSDecoder' },
  'jpeg-2000': { module: '@cornerstonejs/codec-openjpeg/decodewasmjs', decoder: 'J2KDecoder' },
} as const;
type WasmEncoding = keyof typeof WASM_CODECS;

const loaded = new Map<WasmEncoding, WasmModule>();
const loading = new Map<WasmEncoding, Promise<void>>();

function isWasmEncoding(encoding: PixelEncoding): encoding is WasmEncoding {
  return encoding in WASM_CODECS;
}

/** Loads the WebAssembly codec for an encoding once per process; a no-op for the others. */
export async function loadCodec(encoding: PixelEncoding): Promise<void> {
  if (!isWasmEncoding(encoding) || loaded.has(encoding)) return;
  let pending = loading.get(encoding);
  if (pending === undefined) {
    const spec = WASM_CODECS[encoding];
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const factory = require(spec.module) as (options: { print: (text: string) => void; printErr: (text: string) => void }) => Promise<WasmModule>;
    // OpenJPEG writes "[INFO] ..." lines for every frame; codec output is dropped, failures surface as exceptions.
    const silent = () => undefined;
    pending = factory({ print: silent, printErr: silent }).then((module) => {
      loaded.set(encoding, module);
    });
    loading.set(encoding, pending);
  }
  await pending;
}

/** Tells whether a frame in this encoding can be decoded now, without awaiting loadCodec. */
export function isCodecReady(encoding: PixelEncoding): boolean {
  return !isWasmEncoding(encoding) || loaded.has(encoding);
}

/**
 * Decodes one compressed frame into stored values as little-endian bytes of BitsAllocated
 * width, one sample per pixel, so the caller's masking, sign extension and rescale apply
 * as for native pixel data.
 * @throws Error when the codec fails or returns another size than the header declares.
 */
export function decodeFrame(encoding: PixelEncoding, frame: Uint8Array, geometry: FrameGeometry): Uint8Array {
  const bytesPerSample = geometry.bitsAllocated / 8;
  const pixels = geometry.rows * geometry.columns;
  let decoded: Uint8Array;
  let width = geometry.columns;
  let height = geometry.rows;

  switch (encoding) {
    case 'rle':
      return decodeRleFrame(frame, pixels, bytesPerSample);
    case 'jpeg-lossless': {
      // jpeg-lossless-decoder-js returns samples in platform order, which is little endian on x86 and ARM.
      const samples = new JpegLosslessDecoder().decode(frame.buffer as ArrayBuffer, frame.byteOffset, frame.byteLength, bytesPerSample);
      decoded = new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
      break;
    }
    case 'jpeg-baseline':
    case 'jpeg-ls':
    case 'jpeg-2000': {
      const module = loaded.get(encoding);
      if (module === undefined) throw new Error(`the ${encoding} codec is not loaded; await loadCodec('${encoding}') first`);
      const decoder = new module[WASM_CODECS[encoding].decoder]();
      try {
        decoder.getEncodedBuffer(frame.byteLength).set(frame);
        decoder.decode();
        const info = decoder.getFrameInfo();
        width = info.width;
        height = info.height;
        if (info.componentCount !== 1) throw new Error(`codestream has ${info.componentCount} components, expected 1 (grayscale)`);
        // The decoded buffer is a view into WebAssembly memory, so it is copied before the decoder is freed.
        decoded = decoder.getDecodedBuffer().slice();
      } finally {
        decoder.delete();
      }
      break;
    }
    case 'native':
    case 'unsupported':
      throw new Error(`no codec decodes ${encoding} pixel data`);
  }

  if (width !== geometry.columns || height !== geometry.rows || decoded.byteLength !== pixels * bytesPerSample) {
    throw new Error(`codec returned ${width}x${height} (${decoded.byteLength} bytes), expected ${geometry.columns}x${geometry.rows} at ${geometry.bitsAllocated} bits (${pixels * bytesPerSample} bytes)`);
  }
  return decoded;
}
