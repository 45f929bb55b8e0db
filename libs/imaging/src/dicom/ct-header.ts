import { DicomReadError, tagLabel } from './errors';

/** The attributes of one CT slice that series assembly and HU conversion need. */
export interface CtSliceHeader {
  path: string;
  transferSyntaxUID: string;
  sopInstanceUID: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  instanceNumber: number | undefined;
  rows: number;
  columns: number;
  bitsAllocated: 8 | 16;
  bitsStored: number;
  pixelRepresentation: 0 | 1;
  rescaleSlope: number;
  rescaleIntercept: number;
  /** Row spacing then column spacing, in mm. */
  pixelSpacing: [number, number];
  imagePositionPatient: [number, number, number];
  /** Row direction cosines followed by column direction cosines. */
  imageOrientationPatient: [number, number, number, number, number, number];
  sliceThickness: number | undefined;
}

type Dataset = Record<string, unknown>;

/**
 * Extracts and validates the CT slice attributes of a naturalized dataset.
 * @throws DicomReadError for a non-CT modality, a localizer, a multi-frame image, missing
 *   pixel data, or a required tag that is missing or invalid.
 */
export function parseCtSliceHeader(dataset: Dataset, path: string, transferSyntaxUID: string): CtSliceHeader {
  const modality = optionalString(dataset, 'Modality');
  if (modality === undefined) {
    throw new DicomReadError('not-ct', path, tagLabel('Modality'), 'Modality is missing, expected CT');
  }
  if (modality !== 'CT') {
    throw new DicomReadError('not-ct', path, tagLabel('Modality'), `Modality is ${modality}, expected CT`);
  }

  const imageType = stringList(dataset.ImageType).map((value) => value.trim().toUpperCase());
  if (imageType.includes('LOCALIZER')) {
    throw new DicomReadError('localizer', path, tagLabel('ImageType'), `ImageType ${imageType.join('\\')} is a localizer (scout), not an axial slice`);
  }

  const frames = dataset.NumberOfFrames === undefined ? 1 : Number(dataset.NumberOfFrames);
  if (!Number.isInteger(frames) || frames < 1) {
    throw new DicomReadError('invalid-tag', path, tagLabel('NumberOfFrames'), `NumberOfFrames ${String(dataset.NumberOfFrames)} is not a positive integer`);
  }
  if (frames > 1) {
    // Limitation: multi-frame (Enhanced CT) images keep position and rescale in functional
    // group sequences, which this reader does not interpret, so they are rejected.
    throw new DicomReadError('multi-frame', path, tagLabel('NumberOfFrames'), `${frames} frames in one file; multi-frame CT is not supported`);
  }

  if (dataset.PixelData === undefined) {
    throw new DicomReadError('no-pixel-data', path, tagLabel('PixelData'), 'PixelData is missing');
  }

  const samplesPerPixel = dataset.SamplesPerPixel === undefined ? 1 : requiredInteger(dataset, 'SamplesPerPixel', path);
  const photometric = optionalString(dataset, 'PhotometricInterpretation') ?? 'MONOCHROME2';
  if (samplesPerPixel !== 1 || (photometric !== 'MONOCHROME2' && photometric !== 'MONOCHROME1')) {
    throw new DicomReadError('unsupported-pixel-format', path, tagLabel('PhotometricInterpretation'), `${photometric} with ${samplesPerPixel} samples per pixel; a CT slice must be grayscale`);
  }

  const bitsAllocated = requiredInteger(dataset, 'BitsAllocated', path);
  if (bitsAllocated !== 8 && bitsAllocated !== 16) {
    throw new DicomReadError('unsupported-pixel-format', path, tagLabel('BitsAllocated'), `BitsAllocated ${bitsAllocated} is not supported, expected 8 or 16`);
  }
  const bitsStored = requiredInteger(dataset, 'BitsStored', path);
  if (bitsStored < 1 || bitsStored > bitsAllocated) {
    throw new DicomReadError('invalid-tag', path, tagLabel('BitsStored'), `BitsStored ${bitsStored} is outside 1..BitsAllocated (${bitsAllocated})`);
  }
  const highBit = dataset.HighBit === undefined ? bitsStored - 1 : requiredInteger(dataset, 'HighBit', path);
  if (highBit !== bitsStored - 1) {
    // Stored bits that do not start at bit 0 are legal but essentially unused in CT.
    throw new DicomReadError('unsupported-pixel-format', path, tagLabel('HighBit'), `HighBit ${highBit} with BitsStored ${bitsStored}; only HighBit = BitsStored - 1 is supported`);
  }
  const pixelRepresentation = requiredInteger(dataset, 'PixelRepresentation', path);
  if (pixelRepresentation !== 0 && pixelRepresentation !== 1) {
    throw new DicomReadError('invalid-tag', path, tagLabel('PixelRepresentation'), `PixelRepresentation ${pixelRepresentation} must be 0 (unsigned) or 1 (signed)`);
  }

  const rows = requiredInteger(dataset, 'Rows', path);
  const columns = requiredInteger(dataset, 'Columns', path);
  if (rows < 1 || columns < 1) {
    throw new DicomReadError('invalid-tag', path, tagLabel('Rows'), `image size ${rows}x${columns} is empty`);
  }

  const instanceNumber = dataset.InstanceNumber === undefined ? undefined : Number(dataset.InstanceNumber);
  const sliceThickness = dataset.SliceThickness === undefined ? undefined : Number(dataset.SliceThickness);

  return {
    path,
    transferSyntaxUID,
    sopInstanceUID: requiredString(dataset, 'SOPInstanceUID', path),
    studyInstanceUID: requiredString(dataset, 'StudyInstanceUID', path),
    seriesInstanceUID: requiredString(dataset, 'SeriesInstanceUID', path),
    instanceNumber: Number.isFinite(instanceNumber) ? instanceNumber : undefined,
    rows,
    columns,
    bitsAllocated,
    bitsStored,
    pixelRepresentation,
    rescaleSlope: requiredNumbers(dataset, 'RescaleSlope', 1, path)[0],
    rescaleIntercept: requiredNumbers(dataset, 'RescaleIntercept', 1, path)[0],
    pixelSpacing: positiveSpacing(requiredNumbers(dataset, 'PixelSpacing', 2, path), path) as [number, number],
    imagePositionPatient: requiredNumbers(dataset, 'ImagePositionPatient', 3, path) as [number, number, number],
    imageOrientationPatient: requiredNumbers(dataset, 'ImageOrientationPatient', 6, path) as CtSliceHeader['imageOrientationPatient'],
    sliceThickness: Number.isFinite(sliceThickness) ? sliceThickness : undefined,
  };
}

function stringList(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value.map((item) => String(item));
  return String(value).split('\\');
}

function optionalString(dataset: Dataset, keyword: string): string | undefined {
  const value = dataset[keyword];
  if (value === undefined || value === null) return undefined;
  // Padding may be a space or, in some writers, a NUL byte.
  const text = (Array.isArray(value) ? String(value[0]) : String(value)).replace(/^[\s\0]+|[\s\0]+$/g, '');
  return text === '' ? undefined : text;
}

function requiredString(dataset: Dataset, keyword: string, path: string): string {
  const value = optionalString(dataset, keyword);
  if (value === undefined) {
    throw new DicomReadError('missing-tag', path, tagLabel(keyword), `${keyword} is missing`);
  }
  return value;
}

function requiredNumbers(dataset: Dataset, keyword: string, count: number, path: string): number[] {
  const raw = dataset[keyword];
  if (raw === undefined || raw === null || raw === '') {
    throw new DicomReadError('missing-tag', path, tagLabel(keyword), `${keyword} is missing`);
  }
  const values = (Array.isArray(raw) ? raw : String(raw).split('\\')).map((item) => Number(item));
  if (values.length !== count || values.some((value) => !Number.isFinite(value))) {
    throw new DicomReadError('invalid-tag', path, tagLabel(keyword), `${keyword} is ${JSON.stringify(raw)}, expected ${count} number(s)`);
  }
  return values;
}

function requiredInteger(dataset: Dataset, keyword: string, path: string): number {
  const [value] = requiredNumbers(dataset, keyword, 1, path);
  if (!Number.isInteger(value)) {
    throw new DicomReadError('invalid-tag', path, tagLabel(keyword), `${keyword} is ${value}, expected an integer`);
  }
  return value;
}

function positiveSpacing(values: number[], path: string): number[] {
  if (values.some((value) => value <= 0)) {
    throw new DicomReadError('invalid-tag', path, tagLabel('PixelSpacing'), `PixelSpacing ${values.join('\\')} must be positive`);
  }
  return values;
}
