import type { CtSliceHeader } from '../dicom/ct-header';
import { DicomReadError } from '../dicom/errors';
import { readCtFile, type ReadLimits } from '../dicom/read-slice';
import type { ScannedFile } from './scan-index';

/** Header and HU statistics of one frame, as a scan keeps it. */
export interface ScannedSlice {
  header: CtSliceHeader;
  min: number;
  max: number;
  sum: number;
  /** Pixels counted; 0 when the frame was not decoded. */
  count: number;
}

/**
 * Reads one file for a scan: per-frame headers with HU statistics, or headers alone with
 * `headersOnly`, or the reason it is skipped.
 * @throws only for an error that is a bug in this library, not a property of the file.
 */
export async function readSliceStats(path: string, limits: ReadLimits, headersOnly: boolean, io: 'async' | 'blocking' = 'async'): Promise<ScannedFile> {
  try {
    const file = await readCtFile(path, limits, io);
    if (headersOnly) return { frames: file.headers.map((header) => ({ header, min: Infinity, max: -Infinity, sum: 0, count: 0 })) };
    // One buffer serves every frame of the file, because only the statistics are kept.
    let hu: Float32Array | undefined;
    const frames = file.headers.map((header, frame) => {
      const size = header.rows * header.columns;
      if (hu === undefined || hu.length !== size) hu = new Float32Array(size);
      return sliceStats(header, file.decodeFrame(frame, hu));
    });
    return { frames };
  } catch (error) {
    // The reason leaves out the path, which the skipped entry carries.
    if (error instanceof DicomReadError) return { skip: { code: error.code, reason: error.tag === undefined ? error.reason : `${error.tag}: ${error.reason}` } };
    const code = (error as NodeJS.ErrnoException).code;
    if (typeof code === 'string') return { skip: { code: 'io-error', reason: (error as Error).message } };
    throw error;
  }
}

function sliceStats(header: CtSliceHeader, hu: Float32Array): ScannedSlice {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (let i = 0; i < hu.length; i++) {
    const value = hu[i];
    if (value < min) min = value;
    if (value > max) max = value;
    sum += value;
  }
  return { header, min, max, sum, count: hu.length };
}
