/** Pixel data encoding of a transfer syntax, naming the codec that decodes it. */
export type PixelEncoding = 'native' | 'jpeg-baseline' | 'jpeg-lossless' | 'jpeg-ls' | 'jpeg-2000' | 'rle' | 'unsupported';

/** Byte order, VR encoding and pixel encoding of one transfer syntax. */
export interface TransferSyntax {
  uid: string;
  name: string;
  littleEndian: boolean;
  explicitVR: boolean;
  deflated: boolean;
  pixelEncoding: PixelEncoding;
}

/** An uncompressed transfer syntax, kept for callers of the former API. */
export type UncompressedSyntax = TransferSyntax;

function syntax(uid: string, name: string, pixelEncoding: PixelEncoding, overrides: Partial<TransferSyntax> = {}): TransferSyntax {
  return { uid, name, littleEndian: true, explicitVR: true, deflated: false, pixelEncoding, ...overrides };
}

const SYNTAXES: readonly TransferSyntax[] = [
  syntax('1.2.840.10008.1.2', 'Implicit VR Little Endian', 'native', { explicitVR: false }),
  syntax('1.2.840.10008.1.2.1', 'Explicit VR Little Endian', 'native'),
  syntax('1.2.840.10008.1.2.1.99', 'Deflated Explicit VR Little Endian', 'native', { deflated: true }),
  syntax('1.2.840.10008.1.2.2', 'Explicit VR Big Endian', 'native', { littleEndian: false }),
  syntax('1.2.840.10008.1.2.4.50', 'JPEG Baseline', 'jpeg-baseline'),
  // Limitation: 12-bit JPEG Extended needs a 12-bit DCT decoder, which the libjpeg-turbo
  // 8-bit build does not have, so these files are rejected by name.
  syntax('1.2.840.10008.1.2.4.51', 'JPEG Extended', 'unsupported'),
  syntax('1.2.840.10008.1.2.4.57', 'JPEG Lossless', 'jpeg-lossless'),
  syntax('1.2.840.10008.1.2.4.70', 'JPEG Lossless SV1', 'jpeg-lossless'),
  syntax('1.2.840.10008.1.2.4.80', 'JPEG-LS Lossless', 'jpeg-ls'),
  syntax('1.2.840.10008.1.2.4.81', 'JPEG-LS Near-Lossless', 'jpeg-ls'),
  syntax('1.2.840.10008.1.2.4.90', 'JPEG 2000 Lossless', 'jpeg-2000'),
  syntax('1.2.840.10008.1.2.4.91', 'JPEG 2000', 'jpeg-2000'),
  // Limitation: HTJ2K needs an OpenJPH decoder, which is not installed; these files are rejected by name.
  syntax('1.2.840.10008.1.2.4.201', 'HTJ2K Lossless', 'unsupported'),
  syntax('1.2.840.10008.1.2.4.202', 'HTJ2K Lossless RPCL', 'unsupported'),
  syntax('1.2.840.10008.1.2.4.203', 'HTJ2K', 'unsupported'),
  syntax('1.2.840.10008.1.2.5', 'RLE Lossless', 'rle'),
];

/** Looks up a transfer syntax by UID; undefined for an unknown UID. */
export function findTransferSyntax(uid: string): TransferSyntax | undefined {
  return SYNTAXES.find((entry) => entry.uid === uid);
}

/** Looks up an uncompressed transfer syntax by UID; undefined for any other syntax. */
export function findUncompressedSyntax(uid: string): UncompressedSyntax | undefined {
  const found = findTransferSyntax(uid);
  return found?.pixelEncoding === 'native' ? found : undefined;
}

/** Describes a transfer syntax UID for messages, e.g. "1.2.840.10008.1.2.4.70 (JPEG Lossless SV1)". */
export function describeTransferSyntax(uid: string): string {
  return `${uid} (${findTransferSyntax(uid)?.name ?? 'unknown'})`;
}
