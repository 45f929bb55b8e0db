import type { CtSliceHeader } from '../dicom/ct-header';
import { positionAlongNormal, sameOrientation, sliceNormal } from './geometry';

/** Slices that may form one volume: one series, one orientation and, when needed, one acquisition. */
export interface SliceGroup {
  seriesInstanceUID: string;
  /** Set when a series was split by AcquisitionNumber. */
  acquisitionNumber?: number;
  /** Set when a series was split because it contains several orientations, counting from 1. */
  orientationIndex?: number;
  indices: number[];
}

const ORIENTATION_TOLERANCE = 1e-3;
const SAME_POSITION_MM = 0.01;

/**
 * Groups slices by SeriesInstanceUID, then by ImageOrientationPatient. A series whose
 * acquisitions overlap in position (repeated scans of the same range, each with its own
 * AcquisitionNumber) is split by acquisition; a series that merely numbers each slice's
 * acquisition differently stays whole.
 */
export function groupSlices(headers: readonly CtSliceHeader[]): SliceGroup[] {
  const bySeries = new Map<string, number[]>();
  headers.forEach((header, index) => {
    const list = bySeries.get(header.seriesInstanceUID) ?? [];
    list.push(index);
    bySeries.set(header.seriesInstanceUID, list);
  });

  const groups: SliceGroup[] = [];
  for (const [uid, indices] of bySeries) {
    const orientations: number[][] = [];
    for (const index of indices) {
      const cluster = orientations.find((members) => sameOrientation(headers[members[0]].imageOrientationPatient, headers[index].imageOrientationPatient, ORIENTATION_TOLERANCE));
      if (cluster === undefined) orientations.push([index]);
      else cluster.push(index);
    }
    orientations.forEach((members, clusterIndex) => {
      const orientationIndex = orientations.length > 1 ? clusterIndex + 1 : undefined;
      for (const split of splitByAcquisition(headers, members)) {
        groups.push({ seriesInstanceUID: uid, orientationIndex, acquisitionNumber: split.acquisitionNumber, indices: split.indices });
      }
    });
  }
  return groups;
}

function splitByAcquisition(headers: readonly CtSliceHeader[], members: number[]): { acquisitionNumber?: number; indices: number[] }[] {
  const byAcquisition = new Map<number | undefined, number[]>();
  for (const index of members) {
    const key = headers[index].acquisitionNumber;
    byAcquisition.set(key, [...(byAcquisition.get(key) ?? []), index]);
  }
  if (byAcquisition.size < 2 || !hasDuplicatePositions(headers, members)) return [{ indices: members }];
  // Splitting only helps when each acquisition on its own has distinct positions.
  const parts = [...byAcquisition].map(([acquisitionNumber, indices]) => ({ acquisitionNumber, indices }));
  if (parts.some((part) => hasDuplicatePositions(headers, part.indices))) return [{ indices: members }];
  return parts;
}

function hasDuplicatePositions(headers: readonly CtSliceHeader[], members: number[]): boolean {
  const normal = sliceNormal(headers[members[0]].imageOrientationPatient);
  const positions = members.map((index) => positionAlongNormal(headers[index].imagePositionPatient, normal)).sort((a, b) => a - b);
  return positions.some((position, i) => i > 0 && position - positions[i - 1] < SAME_POSITION_MM);
}
