/** Byte order and VR encoding of one uncompressed transfer syntax. */
export interface UncompressedSyntax {
  uid: string;
  name: string;
  littleEndian: boolean;
}

const UNCOMPRESSED: readonly UncompressedSyntax[] = [
  { uid: '1.2.840.10008.1.2', name: 'Implicit VR Little Endian', littleEndian: true },
  { uid: '1.2.840.10008.1.2.1', name: 'Explicit VR Little Endian', littleEndian: true },
  // dcmjs inflates the dataset itself, so the pixel bytes come back as plain explicit little endian.
  { uid: '1.2.840.10008.1.2.1.99', name: 'Deflated Explicit VR Little Endian', littleEndian: true },
  // dcmjs hands pixel bytes of the retired big endian syntax back unswapped; the decoder swaps them.
  { uid: '1.2.840.10008.1.2.2', name: 'Explicit VR Big Endian', littleEndian: false },
];

// Limitation: pixel data in these syntaxes is not decoded, so files using them are
// rejected at scan with their syntax name. It matters for sites whose PACS exports
// JPEG Lossless or JPEG 2000; the fix is a codec per syntax.
const COMPRESSED_NAMES: Readonly<Record<string, string>> = {
  '1.2.840.10008.1.2.4.50': 'JPEG Baseline',
  '1.2.840.10008.1.2.4.51': 'JPEG Extended',
  '1.2.840.10008.1.2.4.57': 'JPEG Lossless',
  '1.2.840.10008.1.2.4.70': 'JPEG Lossless SV1',
  '1.2.840.10008.1.2.4.80': 'JPEG-LS Lossless',
  '1.2.840.10008.1.2.4.81': 'JPEG-LS Near-Lossless',
  '1.2.840.10008.1.2.4.90': 'JPEG 2000 Lossless',
  '1.2.840.10008.1.2.4.91': 'JPEG 2000',
  '1.2.840.10008.1.2.4.201': 'HTJ2K Lossless',
  '1.2.840.10008.1.2.4.202': 'HTJ2K Lossless RPCL',
  '1.2.840.10008.1.2.4.203': 'HTJ2K',
  '1.2.840.10008.1.2.5': 'RLE Lossless',
};

/** Looks up an uncompressed transfer syntax by UID; undefined for any other syntax. */
export function findUncompressedSyntax(uid: string): UncompressedSyntax | undefined {
  return UNCOMPRESSED.find((syntax) => syntax.uid === uid);
}

/** Describes a transfer syntax UID for messages, e.g. "1.2.840.10008.1.2.4.70 (JPEG Lossless SV1)". */
export function describeTransferSyntax(uid: string): string {
  const name = findUncompressedSyntax(uid)?.name ?? COMPRESSED_NAMES[uid] ?? 'unknown';
  return `${uid} (${name})`;
}
