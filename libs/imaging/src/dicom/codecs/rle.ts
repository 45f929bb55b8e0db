/**
 * Decodes one RLE Lossless frame (DICOM PS3.5 Annex G) into little-endian samples.
 * Written here because no maintained npm package decodes DICOM RLE on its own. The 64-byte
 * header gives the segment count and offsets. Each segment holds one byte plane of the
 * image, most significant byte first, and is PackBits-coded: a header byte n of 0..127
 * copies the next n + 1 bytes, -127..-1 repeats the next byte 1 - n times, -128 is a no-op.
 * @returns rows x columns x bytesPerSample bytes, little endian, one sample per pixel.
 * @throws Error when the header or a segment does not match the image size.
 */
export function decodeRleFrame(frame: Uint8Array, pixels: number, bytesPerSample: number): Uint8Array {
  if (frame.byteLength < 64) throw new Error(`RLE frame has ${frame.byteLength} bytes, shorter than its 64-byte header`);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const segments = view.getUint32(0, true);
  if (segments !== bytesPerSample) {
    throw new Error(`RLE header lists ${segments} segments, expected ${bytesPerSample} for one ${bytesPerSample * 8}-bit sample per pixel`);
  }

  const out = new Uint8Array(pixels * bytesPerSample);
  for (let segment = 0; segment < segments; segment++) {
    const start = view.getUint32(4 + segment * 4, true);
    const end = segment + 1 < segments ? view.getUint32(8 + segment * 4, true) : frame.byteLength;
    if (start < 64 || end > frame.byteLength || start > end) {
      throw new Error(`RLE segment ${segment + 1} spans bytes ${start}..${end} of a ${frame.byteLength}-byte frame`);
    }
    // Segment 1 holds the most significant byte, which sits last in little-endian order.
    const byteInSample = bytesPerSample - 1 - segment;
    let written = 0;
    let at = start;
    while (at < end && written < pixels) {
      const header = (frame[at] << 24) >> 24;
      at += 1;
      if (header >= 0) {
        const count = header + 1;
        if (at + count > end) throw new Error(`RLE segment ${segment + 1} literal run passes the end of the segment`);
        for (let k = 0; k < count && written < pixels; k++) out[(written++) * bytesPerSample + byteInSample] = frame[at + k];
        at += count;
      } else if (header !== -128) {
        const count = 1 - header;
        const value = frame[at];
        at += 1;
        for (let k = 0; k < count && written < pixels; k++) out[(written++) * bytesPerSample + byteInSample] = value;
      }
    }
    if (written < pixels) throw new Error(`RLE segment ${segment + 1} decodes to ${written} bytes, expected ${pixels}`);
  }
  return out;
}
