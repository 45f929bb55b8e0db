// Builds small DICOM files byte by byte for the parser cases no real file covers.

/** One element to encode; `items` makes a sequence, `undefinedLength` writes it with delimiters. */
export interface BuiltElement {
  tag: number;
  vr: string;
  value?: Uint8Array | string | number[];
  items?: BuiltElement[][];
  undefinedLength?: boolean;
}

const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT']);

function valueBytes(element: BuiltElement, littleEndian: boolean): Uint8Array {
  const { value, vr } = element;
  if (value === undefined) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value.length % 2 === 0 ? value : Uint8Array.from([...value, 0]);
  if (typeof value === 'string') {
    const padded = value.length % 2 === 0 ? value : `${value}${vr === 'UI' ? '\0' : ' '}`;
    return new Uint8Array(Buffer.from(padded, 'latin1'));
  }
  const size = vr === 'US' || vr === 'SS' ? 2 : 4;
  const out = new Uint8Array(value.length * size);
  const view = new DataView(out.buffer);
  value.forEach((number, i) => {
    if (vr === 'US') view.setUint16(i * 2, number, littleEndian);
    else if (vr === 'SS') view.setInt16(i * 2, number, littleEndian);
    else if (vr === 'UL') view.setUint32(i * 4, number, littleEndian);
    else view.setInt32(i * 4, number, littleEndian);
  });
  return out;
}

/** Encodes elements in the given VR encoding and byte order. */
export function encodeElements(elements: BuiltElement[], explicitVR: boolean, littleEndian: boolean): Uint8Array {
  const parts: Uint8Array[] = [];
  const u16 = (n: number) => {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, n, littleEndian);
    return b;
  };
  const u32 = (n: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n, littleEndian);
    return b;
  };
  const tagBytes = (tag: number) => [u16(tag >>> 16), u16(tag & 0xffff)];

  for (const element of [...elements].sort((a, b) => a.tag - b.tag)) {
    let body: Uint8Array;
    if (element.items !== undefined) {
      // Items of a VR UN sequence are always implicit VR little endian.
      const itemExplicit = element.vr === 'UN' ? false : explicitVR;
      const itemLittle = element.vr === 'UN' ? true : littleEndian;
      const itemParts: Uint8Array[] = [];
      for (const item of element.items) {
        const encoded = encodeElements(item, itemExplicit, itemLittle);
        const header = new Uint8Array(8);
        const view = new DataView(header.buffer);
        view.setUint16(0, 0xfffe, itemLittle);
        view.setUint16(2, 0xe000, itemLittle);
        view.setUint32(4, element.undefinedLength ? 0xffffffff : encoded.length, itemLittle);
        itemParts.push(header, encoded);
        if (element.undefinedLength) {
          const delimiter = new Uint8Array(8);
          const dv = new DataView(delimiter.buffer);
          dv.setUint16(0, 0xfffe, itemLittle);
          dv.setUint16(2, 0xe00d, itemLittle);
          itemParts.push(delimiter);
        }
      }
      if (element.undefinedLength) {
        const delimiter = new Uint8Array(8);
        const dv = new DataView(delimiter.buffer);
        dv.setUint16(0, 0xfffe, itemLittle);
        dv.setUint16(2, 0xe0dd, itemLittle);
        itemParts.push(delimiter);
      }
      body = Buffer.concat(itemParts);
    } else {
      body = valueBytes(element, littleEndian);
    }
    const length = element.undefinedLength ? 0xffffffff : body.length;
    parts.push(...tagBytes(element.tag));
    if (explicitVR) {
      parts.push(new Uint8Array(Buffer.from(element.vr, 'latin1')));
      if (LONG_VRS.has(element.vr)) parts.push(new Uint8Array(2), u32(length));
      else parts.push(u16(length));
    } else {
      parts.push(u32(length));
    }
    parts.push(body);
  }
  return new Uint8Array(Buffer.concat(parts));
}

/** Writes a Part 10 file: preamble, "DICM", file meta in explicit VR little endian, then the dataset. */
export function part10(dataset: BuiltElement[], transferSyntaxUID: string, options: { preamble?: boolean } = {}): Uint8Array {
  const explicitVR = transferSyntaxUID !== '1.2.840.10008.1.2';
  const littleEndian = transferSyntaxUID !== '1.2.840.10008.1.2.2';
  const meta = encodeElements([{ tag: 0x00020010, vr: 'UI', value: transferSyntaxUID }], true, true);
  const head = options.preamble === false ? [] : [new Uint8Array(128), new Uint8Array(Buffer.from('DICM', 'latin1'))];
  return new Uint8Array(Buffer.concat([...head, meta, encodeElements(dataset, explicitVR, littleEndian)]));
}

/** Signed 16-bit pixel values as little-endian bytes. */
export function int16Pixels(values: number[], littleEndian = true): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  values.forEach((value, i) => view.setInt16(i * 2, value, littleEndian));
  return out;
}

export interface CtSliceSpec {
  series?: string;
  instance?: number;
  position?: [number, number, number];
  orientation?: number[];
  pixels?: number[];
  slope?: number;
  intercept?: number;
  imageType?: string;
  kernel?: string;
  extra?: BuiltElement[];
}

/** Elements of a 2x2 signed 16-bit CT slice. */
export function ctSliceElements(spec: CtSliceSpec = {}): BuiltElement[] {
  const pixels = spec.pixels ?? [0, 100, -100, 1000];
  const elements: BuiltElement[] = [
    { tag: 0x00080008, vr: 'CS', value: spec.imageType ?? 'ORIGINAL\\PRIMARY\\AXIAL' },
    { tag: 0x00080018, vr: 'UI', value: `2.25.${spec.instance ?? 1}` },
    { tag: 0x00080060, vr: 'CS', value: 'CT' },
    { tag: 0x00180050, vr: 'DS', value: '1' },
    { tag: 0x0020000d, vr: 'UI', value: '2.25.100' },
    { tag: 0x0020000e, vr: 'UI', value: spec.series ?? '2.25.200' },
    { tag: 0x00200013, vr: 'IS', value: String(spec.instance ?? 1) },
    { tag: 0x00200032, vr: 'DS', value: (spec.position ?? [0, 0, 0]).join('\\') },
    { tag: 0x00200037, vr: 'DS', value: (spec.orientation ?? [1, 0, 0, 0, 1, 0]).join('\\') },
    { tag: 0x00280002, vr: 'US', value: [1] },
    { tag: 0x00280004, vr: 'CS', value: 'MONOCHROME2' },
    { tag: 0x00280010, vr: 'US', value: [2] },
    { tag: 0x00280011, vr: 'US', value: [2] },
    { tag: 0x00280030, vr: 'DS', value: '0.5\\0.5' },
    { tag: 0x00280100, vr: 'US', value: [16] },
    { tag: 0x00280101, vr: 'US', value: [16] },
    { tag: 0x00280102, vr: 'US', value: [15] },
    { tag: 0x00280103, vr: 'US', value: [1] },
    { tag: 0x00281052, vr: 'DS', value: String(spec.intercept ?? -1024) },
    { tag: 0x00281053, vr: 'DS', value: String(spec.slope ?? 1) },
    { tag: 0x7fe00010, vr: 'OW', value: int16Pixels(pixels) },
    ...(spec.extra ?? []),
  ];
  if (spec.kernel !== undefined) elements.push({ tag: 0x00181210, vr: 'SH', value: spec.kernel });
  return elements;
}

/**
 * Writes a Part 10 file in the given compressed transfer syntax: the elements, then PixelData
 * encapsulated as an empty Basic Offset Table and one fragment per entry of `fragments`.
 */
export function encapsulatedPart10(elements: BuiltElement[], transferSyntaxUID: string, fragments: Uint8Array[]): Uint8Array {
  const item = (bytes: Uint8Array) => {
    const head = Buffer.alloc(8);
    head.writeUInt16LE(0xfffe, 0);
    head.writeUInt16LE(0xe000, 2);
    head.writeUInt32LE(bytes.length, 4);
    return Buffer.concat([head, bytes]);
  };
  const withoutPixels = elements.filter((element) => element.tag !== 0x7fe00010);
  // (7FE0,0010) OB, two reserved bytes, undefined length.
  const pixelHeader = Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x42, 0, 0, 0xff, 0xff, 0xff, 0xff]);
  const delimiter = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
  const items = [new Uint8Array(0), ...fragments].map(item);
  return new Uint8Array(Buffer.concat([part10(withoutPixels, transferSyntaxUID), pixelHeader, ...items, delimiter]));
}

/** Transfer syntax UID of RLE Lossless. */
export const RLE_LOSSLESS = '1.2.840.10008.1.2.5';

/**
 * Encodes one RLE Lossless frame (PS3.5 Annex G) of rows x rows 16-bit samples, all equal to `value`:
 * each of the two byte planes is coded as runs of 128 equal bytes (PackBits header 0x81).
 */
export function uniformRleFrame(rows: number, value: number): Uint8Array {
  const runs = (rows * rows) / 128;
  const plane = (byte: number) => {
    const segment = new Uint8Array(runs * 2);
    for (let run = 0; run < runs; run++) segment.set([0x81, byte], run * 2);
    return segment;
  };
  const high = plane(value >> 8);
  const low = plane(value & 0xff);
  const header = new Uint8Array(64);
  const view = new DataView(header.buffer);
  view.setUint32(0, 2, true);
  view.setUint32(4, 64, true);
  view.setUint32(8, 64 + high.length, true);
  return new Uint8Array(Buffer.concat([header, high, low]));
}

/** Writes an RLE Lossless CT file of one rows x rows frame whose stored values all equal `value`. */
export function uniformRleFile(rows: number, value: number, spec: CtSliceSpec = {}): Uint8Array {
  const size = new Set([0x00280010, 0x00280011]);
  const elements = ctSliceElements(spec).filter((element) => !size.has(element.tag));
  elements.push({ tag: 0x00280010, vr: 'US', value: [rows] }, { tag: 0x00280011, vr: 'US', value: [rows] });
  return encapsulatedPart10(elements, RLE_LOSSLESS, [uniformRleFrame(rows, value)]);
}
