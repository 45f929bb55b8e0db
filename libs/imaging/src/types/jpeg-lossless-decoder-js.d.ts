// Typings for the part of jpeg-lossless-decoder-js 2.1 that this library uses; its package
// points at a declaration file that it does not ship.
declare module 'jpeg-lossless-decoder-js' {
  class Decoder {
    constructor(buffer?: ArrayBuffer, numBytes?: number);
    /** Decodes one JPEG Lossless (process 14) image; numBytes is the bytes per sample. */
    decode(buffer: ArrayBuffer, offset: number, length: number, numBytes: number): Uint8Array | Uint16Array | Int16Array;
  }
}
