import type { CtSliceHeader } from '../../src';

/** Builds a CT slice header of a 1x1 unsigned 16-bit slice, with `overrides` applied. */
export function sliceHeader(overrides: Partial<CtSliceHeader>): CtSliceHeader {
  return {
    path: '/archive/slice.dcm',
    frameIndex: 0,
    frameCount: 1,
    acquisitionNumber: 1,
    imageType: ['ORIGINAL', 'PRIMARY', 'AXIAL'],
    convolutionKernel: undefined,
    seriesDescription: undefined,
    gantryDetectorTilt: 0,
    transferSyntaxUID: '1.2.840.10008.1.2.1',
    sopInstanceUID: '2.25.1',
    studyInstanceUID: '2.25.2',
    seriesInstanceUID: '2.25.3',
    instanceNumber: 1,
    rows: 1,
    columns: 1,
    bitsAllocated: 16,
    bitsStored: 16,
    pixelRepresentation: 0,
    rescaleSlope: 1,
    rescaleIntercept: 0,
    pixelSpacing: [1, 1],
    imagePositionPatient: [0, 0, 0],
    imageOrientationPatient: [1, 0, 0, 0, 1, 0],
    sliceThickness: 1,
    ...overrides,
  };
}
