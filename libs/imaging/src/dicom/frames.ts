import { DicomReadError, tagLabel } from './errors';
import type { DicomElement } from './parser';

/**
 * Splits encapsulated PixelData into one byte range per frame. With a Basic Offset Table
 * the offsets decide. Without one, there is one frame per fragment when the counts match,
 * a single frame takes all fragments, and otherwise a new frame starts at each fragment
 * that begins with a codestream start marker (JPEG SOI FFD8, JPEG 2000 SOC FF4F or a JP2 box).
 * @throws DicomReadError when the fragments cannot be matched to `frames` frames.
 */
export function splitEncapsulatedFrames(element: DicomElement, frames: number, path: string): Uint8Array[] {
  const fragments = element.fragments ?? [];
  const [offsetTable, ...data] = fragments;
  if (offsetTable === undefined || data.length === 0) {
    throw new DicomReadError('no-pixel-data', path, tagLabel('PixelData'), 'encapsulated PixelData has no fragments');
  }

  let groups: Uint8Array[][];
  if (offsetTable.byteLength >= 4 * frames && frames > 1) {
    groups = groupByOffsetTable(offsetTable, data, frames, path);
  } else if (data.length === frames) {
    groups = data.map((fragment) => [fragment]);
  } else if (frames === 1) {
    groups = [data];
  } else {
    groups = [];
    for (const fragment of data) {
      if (groups.length === 0 || startsCodestream(fragment)) groups.push([fragment]);
      else groups[groups.length - 1].push(fragment);
    }
  }

  if (groups.length !== frames) {
    throw new DicomReadError('unreadable', path, tagLabel('PixelData'), `${data.length} fragments cannot be matched to NumberOfFrames ${frames}`);
  }
  return groups.map(concatenate);
}

function groupByOffsetTable(table: Uint8Array, data: Uint8Array[], frames: number, path: string): Uint8Array[][] {
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const starts = Array.from({ length: frames }, (_, i) => view.getUint32(i * 4, true));
  const groups: Uint8Array[][] = starts.map(() => []);
  // Offsets count from the first fragment's item tag, so each fragment adds 8 header bytes.
  let position = 0;
  for (const fragment of data) {
    let frame = starts.length - 1;
    while (frame > 0 && starts[frame] > position) frame -= 1;
    if (starts[frame] > position) {
      throw new DicomReadError('unreadable', path, tagLabel('PixelData'), `Basic Offset Table entry ${starts[frame]} does not match a fragment boundary`);
    }
    groups[frame].push(fragment);
    position += 8 + fragment.byteLength;
  }
  return groups;
}

function startsCodestream(fragment: Uint8Array): boolean {
  if (fragment.byteLength < 4) return false;
  const [a, b, c, d] = fragment;
  const jpeg = a === 0xff && b === 0xd8;
  const j2k = a === 0xff && b === 0x4f && c === 0xff && d === 0x51;
  const jp2 = a === 0x00 && b === 0x00 && c === 0x00 && d === 0x0c;
  return jpeg || j2k || jp2;
}

function concatenate(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const total = parts.reduce((sum, part) => sum + part.byteLength, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}
