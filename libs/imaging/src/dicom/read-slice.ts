import { readFile } from 'node:fs/promises';
import * as dcmjs from 'dcmjs';
import { parseCtSliceHeader, type CtSliceHeader } from './ct-header';
import { DicomReadError, tagLabel } from './errors';
import { checkPixelDataComplete, decodeHounsfield } from './pixels';
import { describeTransferSyntax, findUncompressedSyntax } from './transfer-syntax';

/** One CT slice: its header and its pixels in Hounsfield units, row-major. */
export interface CtSlice {
  header: CtSliceHeader;
  hu: Float32Array;
}

const PREAMBLE_BYTES = 128;

// dcmjs 0.49 reports through its "validation.dcmjs" logger, at error level, every
// element whose dictionary VR is ambiguous (e.g. "Invalid vr type ox - using OW" for PixelData
// in implicit VR), once per slice, which would flood the agent's output. This reader checks
// what it uses itself, so that logger is silenced; other dcmjs loggers are left as they are.
dcmjs.log.getLogger('validation.dcmjs').setLevel('silent');

/**
 * Reads one DICOM file as a CT slice in Hounsfield units.
 * Accepts implicit and explicit VR little endian, deflated explicit VR little endian and
 * explicit VR big endian; rejects compressed transfer syntaxes by name.
 * @throws DicomReadError naming the file, the tag and the reason for anything that is not a
 *   readable, uncompressed, single-frame, non-localizer CT slice.
 */
export async function readCtSlice(path: string): Promise<CtSlice> {
  const file = await readFile(path);
  return parseCtSlice(new Uint8Array(file.buffer, file.byteOffset, file.byteLength), path);
}

/** Parses DICOM file bytes as a CT slice; see readCtSlice. */
export function parseCtSlice(file: Uint8Array, path: string): CtSlice {
  const { meta, dataset } = parseDicom(file, path);

  const transferSyntaxUID = typeof meta.TransferSyntaxUID === 'string' ? meta.TransferSyntaxUID.trim() : '';
  if (transferSyntaxUID === '') {
    throw new DicomReadError('unreadable', path, tagLabel('TransferSyntaxUID'), 'TransferSyntaxUID is missing from the file meta information');
  }
  const syntax = findUncompressedSyntax(transferSyntaxUID);
  if (syntax === undefined) {
    throw new DicomReadError('unsupported-transfer-syntax', path, tagLabel('TransferSyntaxUID'), `transfer syntax ${describeTransferSyntax(transferSyntaxUID)} is not supported yet`);
  }

  const header = parseCtSliceHeader(dataset, path, transferSyntaxUID);
  const pixelBytes = firstPixelBuffer(dataset.PixelData, path);
  if (transferSyntaxUID !== '1.2.840.10008.1.2.1.99') {
    checkPixelDataComplete(file, header, syntax.littleEndian);
  }
  return { header, hu: decodeHounsfield(header, pixelBytes, syntax.littleEndian) };
}

function parseDicom(file: Uint8Array, path: string): { meta: Record<string, unknown>; dataset: Record<string, unknown> } {
  const magic = file.byteLength >= PREAMBLE_BYTES + 4 ? String.fromCharCode(...file.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + 4)) : '';
  if (magic !== 'DICM') {
    // Limitation: Part 10 files without preamble and file meta are rejected here as well,
    // because dcmjs 0.49 cannot read them either.
    throw new DicomReadError('not-dicom', path, undefined, `no "DICM" prefix at byte ${PREAMBLE_BYTES}; not a DICOM Part 10 file`);
  }

  const arrayBuffer = file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer;
  let dicomDict: dcmjs.data.DicomDict;
  try {
    dicomDict = dcmjs.data.DicomMessage.readFile(arrayBuffer, { ignoreErrors: false });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new DicomReadError('unreadable', path, undefined, `dcmjs failed to parse the file: ${message}`);
  }

  const meta = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dicomDict.meta);
  const dataset = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dicomDict.dict);
  return { meta, dataset };
}

function firstPixelBuffer(pixelData: unknown, path: string): Uint8Array {
  const buffers = Array.isArray(pixelData) ? pixelData : [pixelData];
  const first: unknown = buffers[0];
  if (first instanceof ArrayBuffer) return new Uint8Array(first);
  if (ArrayBuffer.isView(first)) return new Uint8Array(first.buffer, first.byteOffset, first.byteLength);
  throw new DicomReadError('no-pixel-data', path, tagLabel('PixelData'), 'PixelData has no readable value');
}
