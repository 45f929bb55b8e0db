import { inflateRawSync } from 'node:zlib';
import { DicomReadError, formatTag } from './errors';
import { findTransferSyntax, type TransferSyntax } from './transfer-syntax';

/** One data element: where its value lies in the file, or its parsed items or fragments. */
export interface DicomElement {
  tag: number;
  vr: string;
  /** Byte offset of the value in `DicomDataset.bytes`. */
  offset: number;
  /** Value length in bytes; 0xFFFFFFFF for undefined length. */
  length: number;
  /** Items of a sequence read with undefined length (defined-length sequences are parsed on request). */
  items?: DicomDataset[];
  /** Encapsulated pixel data: the Basic Offset Table item first, then every fragment. */
  fragments?: Uint8Array[];
}

/** Elements of a dataset or sequence item, with the byte order and VR encoding they were read with. */
export class DicomDataset {
  readonly elements = new Map<number, DicomElement>();

  constructor(
    readonly bytes: Uint8Array,
    readonly littleEndian: boolean,
    readonly explicitVR: boolean,
    readonly path: string,
  ) {}

  has(tag: number): boolean {
    return this.elements.has(tag);
  }

  get(tag: number): DicomElement | undefined {
    return this.elements.get(tag);
  }

  /** Raw value bytes of an element with defined length. */
  valueBytes(tag: number): Uint8Array | undefined {
    const element = this.elements.get(tag);
    if (element === undefined || element.length === UNDEFINED_LENGTH) return undefined;
    return this.bytes.subarray(element.offset, element.offset + element.length);
  }

  /** Text value with leading and trailing spaces and NULs removed; undefined when absent or empty. */
  string(tag: number): string | undefined {
    const bytes = this.valueBytes(tag);
    if (bytes === undefined) return undefined;
    const text = latin1(bytes).replace(/^[\s\0]+|[\s\0]+$/g, '');
    return text === '' ? undefined : text;
  }

  /** Backslash-separated text values, each trimmed. */
  strings(tag: number): string[] {
    const text = this.string(tag);
    return text === undefined ? [] : text.split('\\').map((value) => value.replace(/^[\s\0]+|[\s\0]+$/g, ''));
  }

  /**
   * Numeric values of an element, decoded by its VR: DS and IS as text, US, SS, UL, SL, FL
   * and FD as binary. In implicit VR the VR comes from this reader's dictionary.
   * Returns undefined when the element is absent or empty; NaN marks a value that is not a number.
   */
  numbers(tag: number): number[] | undefined {
    const element = this.elements.get(tag);
    const bytes = this.valueBytes(tag);
    if (element === undefined || bytes === undefined || bytes.length === 0) return undefined;
    const vr = element.vr === 'UN' ? (DICTIONARY_VR.get(tag) ?? 'UN') : element.vr;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const le = this.littleEndian;
    const read = (size: number, get: (at: number) => number) => Array.from({ length: Math.floor(bytes.length / size) }, (_, i) => get(i * size));
    switch (vr) {
      case 'US':
        return read(2, (at) => view.getUint16(at, le));
      case 'SS':
        return read(2, (at) => view.getInt16(at, le));
      case 'UL':
        return read(4, (at) => view.getUint32(at, le));
      case 'SL':
        return read(4, (at) => view.getInt32(at, le));
      case 'FL':
        return read(4, (at) => view.getFloat32(at, le));
      case 'FD':
        return read(8, (at) => view.getFloat64(at, le));
      default:
        return this.strings(tag).map((value) => (value === '' ? Number.NaN : Number(value)));
    }
  }

  /**
   * Items of a sequence. A sequence with defined length, or one stored as VR UN, is parsed
   * here on first request; VR UN sequences are implicit VR little endian by PS3.5 section 6.2.2.
   */
  sequence(tag: number): DicomDataset[] {
    const element = this.elements.get(tag);
    if (element === undefined) return [];
    if (element.items !== undefined) return element.items;
    const implicitLittle = element.vr === 'UN' || !this.explicitVR;
    const reader = new ElementReader(this.bytes, this.path, implicitLittle ? true : this.littleEndian, implicitLittle ? false : this.explicitVR);
    element.items = reader.readItems(element.offset, element.offset + element.length, 1);
    return element.items;
  }
}

/** A parsed DICOM file: its file meta information, its dataset and the transfer syntax used. */
export interface ParsedDicom {
  meta: DicomDataset | undefined;
  dataset: DicomDataset;
  transferSyntax: TransferSyntax;
  /** File layout: a Part 10 preamble, file meta without preamble, or a bare dataset. */
  layout: 'part10' | 'meta-without-preamble' | 'bare-dataset';
}

export const UNDEFINED_LENGTH = 0xffffffff;
export const TAG = {
  TransferSyntaxUID: 0x00020010,
  PixelData: 0x7fe00010,
  Item: 0xfffee000,
  ItemDelimitation: 0xfffee00d,
  SequenceDelimitation: 0xfffee0dd,
} as const;

const PREAMBLE_BYTES = 128;
const MAX_NESTING = 16;
// VRs whose explicit header has two reserved bytes and a 4-byte length (PS3.5 table 7.1-1).
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV']);

// VRs of the non-string attributes this library reads, for implicit VR files and VR UN elements.
const DICTIONARY_VR = new Map<number, string>([
  [0x00280002, 'US'], [0x00280010, 'US'], [0x00280011, 'US'], [0x00280100, 'US'], [0x00280101, 'US'],
  [0x00280102, 'US'], [0x00280103, 'US'], [0x00280120, 'US'], [0x00280121, 'US'],
  [0x00080008, 'CS'], [0x00280008, 'IS'], [0x00200013, 'IS'], [0x00200012, 'IS'],
  [0x52009229, 'SQ'], [0x52009230, 'SQ'], [0x00209113, 'SQ'], [0x00209116, 'SQ'], [0x00289110, 'SQ'],
  [0x00289145, 'SQ'], [0x00189329, 'SQ'], [0x00209111, 'SQ'], [0x00209071, 'SQ'],
  [0x7fe00010, 'OW'],
]);

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

function isUpperLetter(byte: number): boolean {
  return byte >= 0x41 && byte <= 0x5a;
}

/** Reads data elements one at a time, so bytes inside a value are never mistaken for tags. */
class ElementReader {
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly path: string,
    private readonly littleEndian: boolean,
    private readonly explicitVR: boolean,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private tagAt(offset: number): number {
    const group = this.view.getUint16(offset, this.littleEndian);
    const element = this.view.getUint16(offset + 2, this.littleEndian);
    return ((group << 16) | element) >>> 0;
  }

  private truncated(tag: number | undefined, offset: number, reason: string): DicomReadError {
    return new DicomReadError('truncated', this.path, tag === undefined ? undefined : formatTag(tag), `${reason} at byte offset ${offset}; the file is truncated or corrupt`);
  }

  /**
   * Reads elements from `start` up to `end`, or up to an item delimitation when `end` is
   * undefined. `stopBefore` ends the read at the first element whose tag is at least it.
   * Returns the dataset and the offset just past what was read.
   */
  readDataset(start: number, end: number | undefined, depth: number, stopBefore?: number): { dataset: DicomDataset; next: number } {
    if (depth > MAX_NESTING) {
      throw new DicomReadError('unreadable', this.path, undefined, `sequences nested deeper than ${MAX_NESTING} levels at byte offset ${start}`);
    }
    const dataset = new DicomDataset(this.bytes, this.littleEndian, this.explicitVR, this.path);
    const limit = end ?? this.bytes.byteLength;
    let offset = start;
    while (offset < limit) {
      if (offset + 8 > limit) throw this.truncated(undefined, offset, `element header needs 8 bytes, ${limit - offset} remain`);
      const tag = this.tagAt(offset);
      if (tag === TAG.ItemDelimitation) {
        if (end !== undefined) throw new DicomReadError('unreadable', this.path, formatTag(tag), `item delimitation inside an item of defined length at byte offset ${offset}`);
        return { dataset, next: offset + 8 };
      }
      if (stopBefore !== undefined && tag >= stopBefore) return { dataset, next: offset };
      const element = this.readElement(offset, limit, depth);
      dataset.elements.set(tag, element.element);
      offset = element.next;
    }
    if (end === undefined) throw this.truncated(undefined, offset, 'item of undefined length has no item delimitation');
    return { dataset, next: offset };
  }

  private readElement(offset: number, limit: number, depth: number): { element: DicomElement; next: number } {
    const tag = this.tagAt(offset);
    if (tag === TAG.Item || tag === TAG.SequenceDelimitation) {
      throw new DicomReadError('unreadable', this.path, formatTag(tag), `item tag outside a sequence at byte offset ${offset}`);
    }

    let vr: string;
    let length: number;
    let valueStart: number;
    if (this.explicitVR) {
      const first = this.bytes[offset + 4];
      const second = this.bytes[offset + 5];
      if (!isUpperLetter(first) || !isUpperLetter(second)) {
        throw new DicomReadError('unreadable', this.path, formatTag(tag), `invalid VR bytes 0x${first.toString(16).padStart(2, '0')} 0x${second.toString(16).padStart(2, '0')} at byte offset ${offset + 4} in an explicit VR dataset`);
      }
      vr = String.fromCharCode(first, second);
      if (LONG_VRS.has(vr)) {
        if (offset + 12 > limit) throw this.truncated(tag, offset, 'element header needs 12 bytes');
        length = this.view.getUint32(offset + 8, this.littleEndian);
        valueStart = offset + 12;
      } else {
        length = this.view.getUint16(offset + 6, this.littleEndian);
        valueStart = offset + 8;
      }
    } else {
      vr = DICTIONARY_VR.get(tag) ?? 'UN';
      length = this.view.getUint32(offset + 4, this.littleEndian);
      valueStart = offset + 8;
    }

    if (length === UNDEFINED_LENGTH) {
      if (tag === TAG.PixelData) {
        const { fragments, next } = this.readFragments(valueStart, limit);
        return { element: { tag, vr, offset: valueStart, length, fragments }, next };
      }
      if (vr !== 'SQ' && vr !== 'UN' && this.explicitVR) {
        throw new DicomReadError('unreadable', this.path, formatTag(tag), `undefined length with VR ${vr} at byte offset ${offset}; only SQ, UN and encapsulated PixelData may have it`);
      }
      // A VR UN element of undefined length holds a sequence in implicit VR little endian.
      const reader = vr === 'UN' && this.explicitVR ? new ElementReader(this.bytes, this.path, true, false) : this;
      const { items, next } = reader.readSequenceUntilDelimiter(valueStart, limit, depth + 1);
      return { element: { tag, vr: vr === 'UN' ? 'SQ' : vr, offset: valueStart, length, items }, next };
    }

    if (valueStart + length > limit) {
      const error = this.truncated(tag, offset, `element declares ${length} bytes of value but ${Math.max(0, limit - valueStart)} remain`);
      throw tag === TAG.PixelData ? new DicomReadError('truncated-pixel-data', this.path, error.tag, error.reason) : error;
    }
    return { element: { tag, vr, offset: valueStart, length }, next: valueStart + length };
  }

  /** Reads the items of a sequence of defined length between `start` and `end`. */
  readItems(start: number, end: number, depth: number): DicomDataset[] {
    const items: DicomDataset[] = [];
    let offset = start;
    while (offset < end) {
      const item = this.readItem(offset, end, depth);
      if (item === undefined) break;
      items.push(item.dataset);
      offset = item.next;
    }
    return items;
  }

  private readSequenceUntilDelimiter(start: number, limit: number, depth: number): { items: DicomDataset[]; next: number } {
    const items: DicomDataset[] = [];
    let offset = start;
    for (;;) {
      if (offset + 8 > limit) throw this.truncated(undefined, offset, 'sequence of undefined length has no sequence delimitation');
      if (this.tagAt(offset) === TAG.SequenceDelimitation) return { items, next: offset + 8 };
      const item = this.readItem(offset, limit, depth);
      if (item === undefined) throw this.truncated(undefined, offset, 'sequence of undefined length has no sequence delimitation');
      items.push(item.dataset);
      offset = item.next;
    }
  }

  private readItem(offset: number, limit: number, depth: number): { dataset: DicomDataset; next: number } | undefined {
    if (offset + 8 > limit) throw this.truncated(undefined, offset, 'item header needs 8 bytes');
    const tag = this.tagAt(offset);
    if (tag === TAG.SequenceDelimitation) return undefined;
    if (tag !== TAG.Item) {
      throw new DicomReadError('unreadable', this.path, formatTag(tag), `expected an item tag (FFFE,E000) at byte offset ${offset} inside a sequence`);
    }
    const length = this.view.getUint32(offset + 4, this.littleEndian);
    if (length === UNDEFINED_LENGTH) return this.readDataset(offset + 8, undefined, depth);
    if (offset + 8 + length > limit) throw this.truncated(tag, offset, `item declares ${length} bytes but ${limit - offset - 8} remain`);
    const { dataset } = this.readDataset(offset + 8, offset + 8 + length, depth);
    return { dataset, next: offset + 8 + length };
  }

  private readFragments(start: number, limit: number): { fragments: Uint8Array[]; next: number } {
    const fragments: Uint8Array[] = [];
    let offset = start;
    for (;;) {
      if (offset + 8 > limit) throw this.truncated(TAG.PixelData, offset, 'encapsulated PixelData has no sequence delimitation');
      const tag = this.tagAt(offset);
      const length = this.view.getUint32(offset + 4, this.littleEndian);
      if (tag === TAG.SequenceDelimitation) return { fragments, next: offset + 8 };
      if (tag !== TAG.Item) {
        throw new DicomReadError('unreadable', this.path, formatTag(TAG.PixelData), `expected a fragment item at byte offset ${offset}, found tag ${formatTag(tag)}`);
      }
      if (offset + 8 + length > limit) {
        throw this.truncated(TAG.PixelData, offset, `fragment declares ${length} bytes but ${limit - offset - 8} remain`);
      }
      fragments.push(this.bytes.subarray(offset + 8, offset + 8 + length));
      offset += 8 + length;
    }
  }
}

/** Limits applied to each file so that one file cannot stall a scan. */
export interface ParseLimits {
  /** Largest inflated size of a deflated dataset, in bytes. */
  maxInflatedBytes: number;
}

/**
 * Parses DICOM file bytes into file meta information and dataset, without dcmjs.
 * Accepts a Part 10 file (128-byte preamble and "DICM"), file meta without preamble, and a
 * bare dataset without file meta, whose transfer syntax is then inferred from the first
 * element (implicit VR little endian, explicit VR little or big endian).
 * `stopBefore` ends the read before the first top-level element with that tag or higher.
 * @throws DicomReadError with code not-dicom when the bytes do not start like DICOM,
 *   truncated with the tag and byte offset where the data ends early, unreadable for
 *   malformed structure or a missing TransferSyntaxUID, unsupported-transfer-syntax for
 *   an unknown transfer syntax UID.
 */
export function parseDicom(bytes: Uint8Array, path: string, limits: ParseLimits, stopBefore?: number): ParsedDicom {
  let metaStart: number | undefined;
  let layout: ParsedDicom['layout'];
  if (bytes.byteLength >= PREAMBLE_BYTES + 4 && latin1(bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + 4)) === 'DICM') {
    metaStart = PREAMBLE_BYTES + 4;
    layout = 'part10';
  } else if (bytes.byteLength >= 4 && latin1(bytes.subarray(0, 4)) === 'DICM') {
    metaStart = 4;
    layout = 'meta-without-preamble';
  } else if (bytes.byteLength >= 8 && bytes[0] === 0x02 && bytes[1] === 0x00 && isUpperLetter(bytes[4]) && isUpperLetter(bytes[5])) {
    metaStart = 0;
    layout = 'meta-without-preamble';
  } else {
    layout = 'bare-dataset';
  }

  if (metaStart === undefined) {
    const guessed = guessBareSyntax(bytes);
    if (guessed === undefined) {
      throw new DicomReadError('not-dicom', path, undefined, `no "DICM" prefix at byte ${PREAMBLE_BYTES} and the first bytes are not a DICOM data element; not a DICOM file`);
    }
    const reader = new ElementReader(bytes, path, guessed.littleEndian, guessed.explicitVR);
    const { dataset } = reader.readDataset(0, bytes.byteLength, 0, stopBefore);
    return { meta: undefined, dataset, transferSyntax: guessed, layout };
  }

  // The file meta group is always explicit VR little endian (PS3.10 section 7.1).
  const metaReader = new ElementReader(bytes, path, true, true);
  const { dataset: meta, next: offset } = metaReader.readDataset(metaStart, bytes.byteLength, 0, 0x00030000);

  const uid = meta.string(TAG.TransferSyntaxUID);
  if (uid === undefined) {
    throw new DicomReadError('unreadable', path, formatTag(TAG.TransferSyntaxUID), 'TransferSyntaxUID is missing from the file meta information');
  }
  const transferSyntax = findTransferSyntax(uid);
  if (transferSyntax === undefined) {
    throw new DicomReadError('unsupported-transfer-syntax', path, formatTag(TAG.TransferSyntaxUID), `transfer syntax ${uid} is unknown`);
  }

  let body = bytes;
  let bodyStart = offset;
  if (transferSyntax.deflated) {
    try {
      body = new Uint8Array(inflateRawSync(bytes.subarray(offset), { maxOutputLength: limits.maxInflatedBytes }));
    } catch (error) {
      throw new DicomReadError('unreadable', path, undefined, `deflated dataset starting at byte offset ${offset} cannot be inflated: ${(error as Error).message}`);
    }
    bodyStart = 0;
  }
  const reader = new ElementReader(body, path, transferSyntax.littleEndian, transferSyntax.explicitVR);
  const { dataset } = reader.readDataset(bodyStart, body.byteLength, 0, stopBefore);
  return { meta, dataset, transferSyntax, layout };
}

// A bare dataset normally starts with group 0008; any even group below 0x0100 is accepted.
function guessBareSyntax(bytes: Uint8Array): TransferSyntax | undefined {
  if (bytes.byteLength < 8) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const plausible = (group: number) => group >= 0x0002 && group < 0x0100 && group % 2 === 0;
  const hasVR = isUpperLetter(bytes[4]) && isUpperLetter(bytes[5]);
  if (plausible(view.getUint16(0, true))) {
    return findTransferSyntax(hasVR ? '1.2.840.10008.1.2.1' : '1.2.840.10008.1.2');
  }
  if (plausible(view.getUint16(0, false)) && hasVR) return findTransferSyntax('1.2.840.10008.1.2.2');
  return undefined;
}
