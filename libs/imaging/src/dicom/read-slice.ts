import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { decodeFrame, isCodecReady, loadCodec } from './codecs';
import { parseCtHeaders, type CtSliceHeader } from './ct-header';
import { DicomReadError, tagLabel } from './errors';
import { splitEncapsulatedFrames } from './frames';
import { parseDicom, TAG } from './parser';
import { decodeHounsfield, expectedPixelBytes } from './pixels';
import { describeTransferSyntax, findTransferSyntax } from './transfer-syntax';

/** One CT slice: its header and its pixels in Hounsfield units, row-major. */
export interface CtSlice {
  header: CtSliceHeader;
  hu: Float32Array;
}

/** Per-file guards, so that one file cannot stall a scan. */
export interface ReadLimits {
  /** Largest file read, in bytes (default 1 GiB). */
  maxFileBytes?: number;
  /** Time allowed for parsing and decoding one file, in ms (default 60,000). */
  timeoutMs?: number;
}

const DEFAULT_MAX_FILE_BYTES = 1024 ** 3;
const DEFAULT_TIMEOUT_MS = 60_000;

/**
 * Reads every frame of one DICOM file as CT slices in Hounsfield units: one slice for a
 * classic CT image, one per frame for an Enhanced CT image. Decodes native, deflated and
 * big endian data, and JPEG Baseline, JPEG Lossless, JPEG-LS, JPEG 2000 and RLE.
 * @throws DicomReadError naming the file, the tag or byte offset and the reason for anything
 *   that is not a readable, non-localizer CT image, and for a file over the size or time limit.
 */
export async function readCtFrames(path: string, limits: ReadLimits = {}): Promise<CtSlice[]> {
  return decodeAllFrames(await readCtFile(path, limits));
}

/** One parsed DICOM CT file whose frames are decoded on request. */
export interface CtFile {
  path: string;
  /** One header per frame. */
  headers: CtSliceHeader[];
  /**
   * Decodes one frame to Hounsfield units into `target` (default: a new array).
   * @throws DicomReadError when the frame cannot be decoded or the time limit has passed.
   */
  decodeFrame(frame: number, target?: Float32Array): Float32Array;
}

/**
 * Reads and parses one DICOM file, loading the codec its transfer syntax needs, but decodes
 * no pixels yet; see readCtFrames for what is accepted.
 * @throws DicomReadError as readCtFrames does.
 */
export async function readCtFile(path: string, limits: ReadLimits = {}, io: 'async' | 'blocking' = 'async'): Promise<CtFile> {
  // Blocking reads save the thread-pool round trips of an async read (open, stat, read,
  // close), which matter at a few hundred files per second. Only a thread with nothing else
  // to serve, such as a decode worker, should use them.
  const maxBytes = limits.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  let bytes: Uint8Array;
  try {
    bytes = io === 'blocking' ? readFileBytesBlocking(path, maxBytes) : await readFileBytes(path, maxBytes);
  } catch (error) {
    if (error instanceof DicomReadError || typeof (error as NodeJS.ErrnoException).code !== 'string') throw error;
    // The file vanished, is not readable or the disk failed: not a property of its content.
    throw new DicomReadError('io-error', path, undefined, `the file cannot be read: ${(error as Error).message}`);
  }
  const encoding = peekTransferSyntax(bytes);
  if (encoding !== undefined && !isCodecReady(encoding)) await loadCodec(encoding);
  return parseCtFile(bytes, path, limits);
}

function readFileBytesBlocking(path: string, maxBytes: number): Uint8Array {
  const handle = openSync(path, 'r');
  try {
    const { size } = fstatSync(handle);
    if (size > maxBytes) throw new DicomReadError('too-large', path, undefined, `file has ${size} bytes, more than the limit of ${maxBytes}`);
    const bytes = Buffer.allocUnsafeSlow(size);
    let filled = 0;
    while (filled < size) {
      const bytesRead = readSync(handle, bytes, filled, size - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled === size ? bytes : bytes.subarray(0, filled);
  } finally {
    closeSync(handle);
  }
}

// Reads a whole file with one read into a buffer of its size, after checking the size limit.
async function readFileBytes(path: string, maxBytes: number): Promise<Uint8Array> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    if (size > maxBytes) throw new DicomReadError('too-large', path, undefined, `file has ${size} bytes, more than the limit of ${maxBytes}`);
    // Not zero-filled: the read overwrites every byte, and a short read is cut off below.
    const bytes = Buffer.allocUnsafeSlow(size);
    let filled = 0;
    while (filled < size) {
      const { bytesRead } = await handle.read(bytes, filled, size - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled === size ? bytes : bytes.subarray(0, filled);
  } finally {
    await handle.close();
  }
}

/**
 * Reads one single-frame DICOM file as a CT slice in Hounsfield units; see readCtFrames.
 * @throws DicomReadError with code multi-frame for a file of several frames (use readCtFrames).
 */
export async function readCtSlice(path: string, limits: ReadLimits = {}): Promise<CtSlice> {
  return onlyFrame(await readCtFrames(path, limits), path);
}

/** Parses single-frame DICOM file bytes as a CT slice; see readCtSlice and parseCtFrames. */
export function parseCtSlice(file: Uint8Array, path: string): CtSlice {
  return onlyFrame(parseCtFrames(file, path), path);
}

/**
 * Parses DICOM file bytes into CT slices, one per frame; see readCtFrames. Compressed
 * frames need their codec loaded first (readCtFrames does that; here `loadCodec` must
 * have been awaited), otherwise the file is rejected with code decode-failed.
 */
export function parseCtFrames(file: Uint8Array, path: string, limits: ReadLimits = {}): CtSlice[] {
  return decodeAllFrames(parseCtFile(file, path, limits));
}

function decodeAllFrames(file: CtFile): CtSlice[] {
  return file.headers.map((header, frame) => ({ header, hu: file.decodeFrame(frame) }));
}

/**
 * Parses DICOM file bytes and checks that every frame can be located, without decoding
 * pixels; see parseCtFrames for the codec precondition.
 * @throws DicomReadError as readCtFrames does, for everything but pixel decoding.
 */
export function parseCtFile(file: Uint8Array, path: string, limits: ReadLimits = {}): CtFile {
  const started = performance.now();
  const timeoutMs = limits.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const checkTime = (stage: string) => {
    const elapsed = performance.now() - started;
    if (elapsed > timeoutMs) throw new DicomReadError('timed-out', path, undefined, `${stage} took ${Math.round(elapsed)} ms, more than the limit of ${timeoutMs} ms`);
  };

  const { dataset, transferSyntax } = parseDicom(file, path, { maxInflatedBytes: limits.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES });
  const encoding = transferSyntax.pixelEncoding;
  if (encoding === 'unsupported') {
    throw new DicomReadError('unsupported-transfer-syntax', path, tagLabel('TransferSyntaxUID'), `transfer syntax ${describeTransferSyntax(transferSyntax.uid)} is not supported`);
  }
  const headers = parseCtHeaders(dataset, path, transferSyntax.uid);
  checkTime('parsing');

  const pixelElement = dataset.get(TAG.PixelData);
  if (pixelElement === undefined) throw new DicomReadError('no-pixel-data', path, tagLabel('PixelData'), 'PixelData is missing');
  const first = headers[0];
  const frameBytes = expectedPixelBytes(first);
  // A compressed frame may declare a size far beyond its file; check before the codec allocates it.
  const maxFrameBytes = limits.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  if (frameBytes > maxFrameBytes) {
    throw new DicomReadError('too-large', path, tagLabel('Rows'), `a ${first.rows}x${first.columns} frame at ${first.bitsAllocated} bits needs ${frameBytes} bytes decoded, more than the limit of ${maxFrameBytes}`);
  }

  if (encoding === 'native') {
    if (pixelElement.fragments !== undefined) {
      throw new DicomReadError('unreadable', path, tagLabel('PixelData'), `encapsulated PixelData in the uncompressed transfer syntax ${describeTransferSyntax(transferSyntax.uid)}`);
    }
    const needed = frameBytes * headers.length;
    if (pixelElement.length < needed) {
      throw new DicomReadError('truncated-pixel-data', path, tagLabel('PixelData'), `PixelData has ${pixelElement.length} bytes, expected ${needed} for ${headers.length} frame(s) of ${first.rows}x${first.columns} at ${first.bitsAllocated} bits`);
    }
    const pixels = dataset.bytes.subarray(pixelElement.offset, pixelElement.offset + pixelElement.length);
    return {
      path,
      headers,
      decodeFrame: (frame, target) => decodeHounsfield(headers[frame], pixels.subarray(frame * frameBytes, (frame + 1) * frameBytes), transferSyntax.littleEndian, target),
    };
  }

  if (pixelElement.fragments === undefined) {
    throw new DicomReadError('unreadable', path, tagLabel('PixelData'), `PixelData is not encapsulated, but transfer syntax ${describeTransferSyntax(transferSyntax.uid)} is compressed`);
  }
  if (!isCodecReady(encoding)) {
    throw new DicomReadError('decode-failed', path, tagLabel('PixelData'), `the ${encoding} codec is not loaded; read the file with readCtFrames or await loadCodec first`);
  }
  const frames = splitEncapsulatedFrames(pixelElement, headers.length, path);
  const decodeFrameHu = (frame: number, target?: Float32Array) => {
    const header = headers[frame];
    let decoded: Uint8Array;
    try {
      decoded = decodeFrame(encoding, frames[frame], header);
    } catch (error) {
      throw new DicomReadError('decode-failed', path, tagLabel('PixelData'), `${transferSyntax.name} frame ${frame + 1} cannot be decoded: ${(error as Error).message}`);
    }
    checkTime(`decoding frame ${frame + 1}`);
    return decodeHounsfield(header, decoded, true, target);
  };
  return { path, headers, decodeFrame: decodeFrameHu };
}

function onlyFrame(slices: CtSlice[], path: string): CtSlice {
  if (slices.length !== 1) {
    throw new DicomReadError('multi-frame', path, tagLabel('NumberOfFrames'), `${slices.length} frames in one file; read it with readCtFrames`);
  }
  return slices[0];
}

// Reads only the file meta information, to know which codec to load before the full parse.
function peekTransferSyntax(bytes: Uint8Array) {
  try {
    const { transferSyntax } = parseDicom(bytes, '', { maxInflatedBytes: 0 }, 0x00080000);
    return transferSyntax.pixelEncoding;
  } catch {
    // The full parse reports the problem with the file's path.
    return undefined;
  }
}
