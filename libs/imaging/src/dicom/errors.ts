/** Reason code for a file that cannot be used as a CT slice, a closed set that callers can switch on. */
export type DicomRejectCode =
  | 'not-dicom'
  | 'unreadable'
  | 'unsupported-transfer-syntax'
  | 'not-ct'
  | 'localizer'
  | 'multi-frame'
  | 'no-pixel-data'
  | 'missing-tag'
  | 'invalid-tag'
  | 'unsupported-pixel-format'
  | 'truncated-pixel-data'
  | 'truncated'
  | 'decode-failed'
  | 'too-large'
  | 'timed-out'
  | 'io-error';

/** A file that cannot be read as a CT slice, naming the file, the tag involved and the reason. */
export class DicomReadError extends Error {
  constructor(
    readonly code: DicomRejectCode,
    readonly path: string,
    readonly tag: string | undefined,
    readonly reason: string,
  ) {
    super(`${path}: ${tag === undefined ? '' : `${tag}: `}${reason}`);
    this.name = 'DicomReadError';
  }
}

// Tag numbers for the keywords this library reads, so messages carry both.
const TAG_NUMBERS: Readonly<Record<string, string>> = {
  TransferSyntaxUID: '(0002,0010)',
  ImageType: '(0008,0008)',
  SOPInstanceUID: '(0008,0018)',
  Modality: '(0008,0060)',
  SliceThickness: '(0018,0050)',
  StudyInstanceUID: '(0020,000D)',
  SeriesInstanceUID: '(0020,000E)',
  InstanceNumber: '(0020,0013)',
  ImagePositionPatient: '(0020,0032)',
  ImageOrientationPatient: '(0020,0037)',
  SamplesPerPixel: '(0028,0002)',
  PhotometricInterpretation: '(0028,0004)',
  NumberOfFrames: '(0028,0008)',
  Rows: '(0028,0010)',
  Columns: '(0028,0011)',
  PixelSpacing: '(0028,0030)',
  BitsAllocated: '(0028,0100)',
  BitsStored: '(0028,0101)',
  HighBit: '(0028,0102)',
  PixelRepresentation: '(0028,0103)',
  RescaleIntercept: '(0028,1052)',
  RescaleSlope: '(0028,1053)',
  PixelPaddingValue: '(0028,0120)',
  PixelPaddingRangeLimit: '(0028,0121)',
  AcquisitionNumber: '(0020,0012)',
  ConvolutionKernel: '(0018,1210)',
  GantryDetectorTilt: '(0018,1120)',
  SharedFunctionalGroupsSequence: '(5200,9229)',
  PerFrameFunctionalGroupsSequence: '(5200,9230)',
  PixelData: '(7FE0,0010)',
};

/** Formats a tag number as "(GGGG,EEEE)". */
export function formatTag(tag: number): string {
  const hex = (tag >>> 0).toString(16).toUpperCase().padStart(8, '0');
  return `(${hex.slice(0, 4)},${hex.slice(4)})`;
}

/** Formats a DICOM keyword with its tag number, e.g. "RescaleSlope (0028,1053)". */
export function tagLabel(keyword: string): string {
  const number = TAG_NUMBERS[keyword];
  return number === undefined ? keyword : `${keyword} ${number}`;
}
