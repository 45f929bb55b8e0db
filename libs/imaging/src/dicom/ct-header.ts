import { DicomReadError, tagLabel } from './errors';
import { TAG, type DicomDataset } from './parser';

/** The attributes of one CT slice (a single-frame file or one frame of a multi-frame file) that series assembly and HU conversion need. */
export interface CtSliceHeader {
  path: string;
  /** Frame number within the file, from 0; always 0 for single-frame files. */
  frameIndex: number;
  /** Frames in the file (NumberOfFrames, 1 when absent). */
  frameCount: number;
  transferSyntaxUID: string;
  sopInstanceUID: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  instanceNumber: number | undefined;
  acquisitionNumber: number | undefined;
  /** ImageType values, or FrameType of the CT Image Frame Type functional group, upper case. */
  imageType: string[];
  convolutionKernel: string | undefined;
  seriesDescription: string | undefined;
  /** GantryDetectorTilt in degrees; 0 when absent. */
  gantryDetectorTilt: number;
  rows: number;
  columns: number;
  bitsAllocated: 8 | 16;
  bitsStored: number;
  pixelRepresentation: 0 | 1;
  rescaleSlope: number;
  rescaleIntercept: number;
  /** PixelPaddingValue and PixelPaddingRangeLimit as stored values, sign-extended when PixelRepresentation is 1. */
  pixelPaddingValue?: number;
  pixelPaddingRangeLimit?: number;
  /** Row spacing then column spacing, in mm. */
  pixelSpacing: [number, number];
  imagePositionPatient: [number, number, number];
  /** Row direction cosines followed by column direction cosines. */
  imageOrientationPatient: [number, number, number, number, number, number];
  sliceThickness: number | undefined;
}

const T = {
  ImageType: 0x00080008,
  SOPInstanceUID: 0x00080018,
  Modality: 0x00080060,
  SeriesDescription: 0x0008103e,
  FrameType: 0x00089007,
  SliceThickness: 0x00180050,
  GantryDetectorTilt: 0x00181120,
  ConvolutionKernel: 0x00181210,
  CTImageFrameTypeSequence: 0x00189329,
  CTReconstructionSequence: 0x00189314,
  StudyInstanceUID: 0x0020000d,
  SeriesInstanceUID: 0x0020000e,
  AcquisitionNumber: 0x00200012,
  InstanceNumber: 0x00200013,
  ImagePositionPatient: 0x00200032,
  ImageOrientationPatient: 0x00200037,
  PlanePositionSequence: 0x00209113,
  PlaneOrientationSequence: 0x00209116,
  SamplesPerPixel: 0x00280002,
  PhotometricInterpretation: 0x00280004,
  NumberOfFrames: 0x00280008,
  Rows: 0x00280010,
  Columns: 0x00280011,
  PixelSpacing: 0x00280030,
  BitsAllocated: 0x00280100,
  BitsStored: 0x00280101,
  HighBit: 0x00280102,
  PixelRepresentation: 0x00280103,
  PixelPaddingValue: 0x00280120,
  PixelPaddingRangeLimit: 0x00280121,
  RescaleIntercept: 0x00281052,
  RescaleSlope: 0x00281053,
  PixelMeasuresSequence: 0x00289110,
  PixelValueTransformationSequence: 0x00289145,
  SharedFunctionalGroupsSequence: 0x52009229,
  PerFrameFunctionalGroupsSequence: 0x52009230,
  PixelData: 0x7fe00010,
} as const;
type Keyword = keyof typeof T;

/**
 * Reads an attribute the way an Enhanced CT reader must: from the frame's per-frame
 * functional group, then the shared functional groups, then the top-level dataset.
 */
class FrameAttributes {
  constructor(
    private readonly dataset: DicomDataset,
    private readonly perFrame: DicomDataset | undefined,
    private readonly shared: DicomDataset | undefined,
  ) {}

  /** The dataset holding `keyword`, looked up inside functional group `macro` first. */
  find(keyword: Keyword, macro?: Keyword): DicomDataset | undefined {
    if (macro !== undefined) {
      for (const group of [this.perFrame, this.shared]) {
        const item = group?.sequence(T[macro])[0];
        if (item?.has(T[keyword])) return item;
      }
    }
    return this.dataset.has(T[keyword]) ? this.dataset : undefined;
  }
}

// Checks NumberOfFrames against what PixelData can hold before one header per frame is built,
// so that a corrupt count such as 2^31 - 1 is rejected at once instead of exhausting memory.
function checkFrameCount(dataset: DicomDataset, frames: number, frameBytes: number, path: string): void {
  const pixelData = dataset.get(TAG.PixelData)!;
  if (pixelData.fragments !== undefined) {
    // Each frame takes at least one fragment after the Basic Offset Table (PS3.5 A.4).
    const fragments = pixelData.fragments.length - 1;
    if (frames > fragments) {
      throw new DicomReadError('invalid-tag', path, tagLabel('NumberOfFrames'), `NumberOfFrames ${frames} is more than the ${fragments} fragments of the encapsulated PixelData`);
    }
    return;
  }
  if (frames * frameBytes > pixelData.length) {
    throw new DicomReadError('truncated-pixel-data', path, tagLabel('NumberOfFrames'), `NumberOfFrames ${frames} needs ${frames * frameBytes} bytes of PixelData, which has ${pixelData.length}`);
  }
}

/**
 * Extracts and validates the CT slice attributes of each frame of a parsed file.
 * Multi-frame (Enhanced CT) files give one header per frame, with position, orientation,
 * pixel spacing and rescale taken from the per-frame or shared functional groups.
 * @throws DicomReadError for a non-CT modality, a localizer, missing pixel data, a non-grayscale
 *   image, or a required tag that is missing or invalid.
 */
export function parseCtHeaders(dataset: DicomDataset, path: string, transferSyntaxUID: string): CtSliceHeader[] {
  const modality = dataset.string(T.Modality);
  if (modality !== 'CT') {
    throw new DicomReadError('not-ct', path, tagLabel('Modality'), modality === undefined ? 'Modality is missing, expected CT' : `Modality is ${modality}, expected CT`);
  }
  const imageType = dataset.strings(T.ImageType).map((value) => value.toUpperCase());
  if (imageType.includes('LOCALIZER')) {
    throw new DicomReadError('localizer', path, tagLabel('ImageType'), `ImageType ${imageType.join('\\')} is a localizer (scout), not an axial slice`);
  }

  const framesValue = dataset.numbers(T.NumberOfFrames);
  const frames = framesValue === undefined ? 1 : framesValue[0];
  if (!Number.isInteger(frames) || frames < 1) {
    throw new DicomReadError('invalid-tag', path, tagLabel('NumberOfFrames'), `NumberOfFrames ${dataset.string(T.NumberOfFrames)} is not a positive integer`);
  }
  if (!dataset.has(T.PixelData)) throw new DicomReadError('no-pixel-data', path, tagLabel('PixelData'), 'PixelData is missing');

  const samplesPerPixel = optionalInteger(dataset, 'SamplesPerPixel', path) ?? 1;
  const photometric = dataset.string(T.PhotometricInterpretation) ?? 'MONOCHROME2';
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
  const highBit = optionalInteger(dataset, 'HighBit', path) ?? bitsStored - 1;
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
  if (rows < 1 || columns < 1) throw new DicomReadError('invalid-tag', path, tagLabel('Rows'), `image size ${rows}x${columns} is empty`);
  checkFrameCount(dataset, frames, rows * columns * (bitsAllocated / 8), path);

  const padding = optionalInteger(dataset, 'PixelPaddingValue', path);
  const paddingLimit = optionalInteger(dataset, 'PixelPaddingRangeLimit', path);
  // PixelPaddingValue is US or SS by PixelRepresentation, but implicit VR files and some
  // writers give the 16-bit pattern as unsigned, e.g. 63536 for -2000. The value is 16 bits
  // wide whatever BitsAllocated is, so signed 8-bit data is read back the same way.
  const asStored = (value: number | undefined) => (value !== undefined && pixelRepresentation === 1 && value >= 0x8000 ? value - 0x10000 : value);

  const perFrameItems = dataset.sequence(T.PerFrameFunctionalGroupsSequence);
  const shared = dataset.sequence(T.SharedFunctionalGroupsSequence)[0];
  if (frames > 1 && perFrameItems.length !== frames && perFrameItems.length !== 0) {
    throw new DicomReadError('invalid-tag', path, tagLabel('PerFrameFunctionalGroupsSequence'), `${perFrameItems.length} per-frame functional group items for NumberOfFrames ${frames}`);
  }

  const headers: CtSliceHeader[] = [];
  for (let frame = 0; frame < frames; frame++) {
    const attributes = new FrameAttributes(dataset, perFrameItems[frame], shared);
    const frameTypeItem = attributes.find('FrameType', 'CTImageFrameTypeSequence');
    const frameType = frameTypeItem === undefined ? imageType : frameTypeItem.strings(T.FrameType).map((value) => value.toUpperCase());
    if (frameType.includes('LOCALIZER')) {
      throw new DicomReadError('localizer', path, tagLabel('ImageType'), `frame ${frame + 1} has FrameType ${frameType.join('\\')}, a localizer (scout)`);
    }
    if (frames > 1 && attributes.find('ImagePositionPatient', 'PlanePositionSequence') === undefined) {
      throw new DicomReadError('missing-tag', path, tagLabel('ImagePositionPatient'), `frame ${frame + 1} has no ImagePositionPatient in its functional groups`);
    }
    const read = (keyword: Keyword, count: number, macro?: Keyword) => requiredNumbers(attributes.find(keyword, macro) ?? dataset, keyword, count, path);
    const kernelItem = attributes.find('ConvolutionKernel', 'CTReconstructionSequence');
    const thickness = (attributes.find('SliceThickness', 'PixelMeasuresSequence') ?? dataset).numbers(T.SliceThickness)?.[0];

    headers.push({
      path,
      frameIndex: frame,
      frameCount: frames,
      transferSyntaxUID,
      sopInstanceUID: requiredString(dataset, 'SOPInstanceUID', path),
      studyInstanceUID: requiredString(dataset, 'StudyInstanceUID', path),
      seriesInstanceUID: requiredString(dataset, 'SeriesInstanceUID', path),
      instanceNumber: finiteOrUndefined(dataset.numbers(T.InstanceNumber)?.[0]),
      acquisitionNumber: finiteOrUndefined(dataset.numbers(T.AcquisitionNumber)?.[0]),
      imageType: frameType,
      convolutionKernel: kernelItem?.strings(T.ConvolutionKernel).join('\\') || undefined,
      seriesDescription: dataset.string(T.SeriesDescription),
      gantryDetectorTilt: finiteOrUndefined(dataset.numbers(T.GantryDetectorTilt)?.[0]) ?? 0,
      rows,
      columns,
      bitsAllocated,
      bitsStored,
      pixelRepresentation,
      rescaleSlope: read('RescaleSlope', 1, 'PixelValueTransformationSequence')[0],
      rescaleIntercept: read('RescaleIntercept', 1, 'PixelValueTransformationSequence')[0],
      pixelPaddingValue: asStored(padding),
      pixelPaddingRangeLimit: asStored(paddingLimit),
      pixelSpacing: positiveSpacing(read('PixelSpacing', 2, 'PixelMeasuresSequence'), path) as [number, number],
      imagePositionPatient: read('ImagePositionPatient', 3, 'PlanePositionSequence') as [number, number, number],
      imageOrientationPatient: read('ImageOrientationPatient', 6, 'PlaneOrientationSequence') as CtSliceHeader['imageOrientationPatient'],
      sliceThickness: finiteOrUndefined(thickness),
    });
  }
  return headers;
}

function finiteOrUndefined(value: number | undefined): number | undefined {
  return value !== undefined && Number.isFinite(value) ? value : undefined;
}

// A required element that is absent, or present with an empty value (type 2 written as type 1).
function missingTag(dataset: DicomDataset, keyword: Keyword, path: string): DicomReadError {
  const problem = dataset.has(T[keyword]) ? 'is empty' : 'is missing';
  return new DicomReadError('missing-tag', path, tagLabel(keyword), `${keyword} ${problem}`);
}

function requiredString(dataset: DicomDataset, keyword: Keyword, path: string): string {
  const value = dataset.string(T[keyword]);
  if (value === undefined) throw missingTag(dataset, keyword, path);
  return value;
}

function requiredNumbers(dataset: DicomDataset, keyword: Keyword, count: number, path: string): number[] {
  const values = dataset.numbers(T[keyword]);
  if (values === undefined) throw missingTag(dataset, keyword, path);
  if (values.length !== count || values.some((value) => !Number.isFinite(value))) {
    throw new DicomReadError('invalid-tag', path, tagLabel(keyword), `${keyword} is "${dataset.string(T[keyword]) ?? values.join('\\')}", expected ${count} number(s)`);
  }
  return values;
}

function optionalInteger(dataset: DicomDataset, keyword: Keyword, path: string): number | undefined {
  if (dataset.numbers(T[keyword]) === undefined) return undefined;
  return requiredInteger(dataset, keyword, path);
}

function requiredInteger(dataset: DicomDataset, keyword: Keyword, path: string): number {
  const [value] = requiredNumbers(dataset, keyword, 1, path);
  if (!Number.isInteger(value)) throw new DicomReadError('invalid-tag', path, tagLabel(keyword), `${keyword} is ${value}, expected an integer`);
  return value;
}

function positiveSpacing(values: number[], path: string): number[] {
  if (values.some((value) => value <= 0)) {
    throw new DicomReadError('invalid-tag', path, tagLabel('PixelSpacing'), `PixelSpacing ${values.join('\\')} must be positive`);
  }
  return values;
}
