import { writeFile } from 'node:fs/promises';
import * as dcmjs from 'dcmjs';
import type { SyntheticExam } from './phantom';
import type { SeededRandom } from './prng';

const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
// Stored value = HU + 1024, the usual CT convention; PixelRepresentation 1 keeps the
// rare values below -1024 representable.
const RESCALE_INTERCEPT = -1024;

/** Identifiers of one synthetic exam inside its archive. */
export interface SyntheticExamIdentity {
  patientName: string;
  patientID: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  frameOfReferenceUID: string;
  institutionName: string;
}

/**
 * Generates a DICOM UID under the 2.25 root from 128 seeded random bits, so the same seed
 * gives the same UIDs.
 */
export function makeUid(random: SeededRandom): string {
  let value = 0n;
  for (let i = 0; i < 4; i++) value = (value << 32n) | BigInt(random.nextUint32());
  return `2.25.${value.toString()}`;
}

/** Labels of one series of an exam, for exams that contain several reconstructions. */
export interface SyntheticSeriesOptions {
  /** ImageType values (default ORIGINAL, PRIMARY, AXIAL). */
  imageType?: string[];
  /** ConvolutionKernel; omitted from the files by default. */
  convolutionKernel?: string;
  /** SeriesDescription (default "Chest axial"). */
  seriesDescription?: string;
  /** SeriesNumber (default 2). */
  seriesNumber?: number;
  /** Prepended to every file name, so that several series can share one folder (default none). */
  fileNamePrefix?: string;
}

/**
 * Writes each slice of a synthetic exam as a CT Image Storage file (explicit VR little endian,
 * 16-bit signed, RescaleSlope 1, RescaleIntercept -1024) named `<nnnn>.dcm`. Instance 1 is the
 * most superior slice, as scanners usually number a chest scan, so file order runs against
 * position order.
 * @returns the written paths, from instance 1 upwards.
 */
export async function writeExamAsDicom(
  exam: SyntheticExam,
  identity: SyntheticExamIdentity,
  examDir: string,
  random: SeededRandom,
  series: SyntheticSeriesOptions = {},
): Promise<string[]> {
  const sliceSize = exam.rows * exam.columns;
  const paths: string[] = [];
  const originX = -((exam.columns - 1) / 2) * exam.pixelSpacing[1];
  const originY = -((exam.rows - 1) / 2) * exam.pixelSpacing[0];

  for (let instance = 1; instance <= exam.slices; instance++) {
    const slice = exam.slices - instance;
    const z = slice * exam.sliceSpacing;
    const pixels = new Int16Array(sliceSize);
    for (let i = 0; i < sliceSize; i++) pixels[i] = exam.hu[slice * sliceSize + i] - RESCALE_INTERCEPT;

    const sopInstanceUID = makeUid(random);
    const dataset: Record<string, unknown> = {
      SpecificCharacterSet: 'ISO_IR 100',
      ImageType: series.imageType ?? ['ORIGINAL', 'PRIMARY', 'AXIAL'],
      SOPClassUID: CT_IMAGE_STORAGE,
      SOPInstanceUID: sopInstanceUID,
      StudyDate: '20200301',
      StudyTime: '120000',
      Modality: 'CT',
      Manufacturer: 'COVNet synthetic phantom',
      InstitutionName: identity.institutionName,
      StudyDescription: 'Synthetic chest CT',
      SeriesDescription: series.seriesDescription ?? 'Chest axial',
      PatientName: identity.patientName,
      PatientID: identity.patientID,
      PatientBirthDate: '',
      PatientSex: 'O',
      SliceThickness: exam.sliceThickness,
      KVP: 120,
      SpacingBetweenSlices: exam.sliceSpacing,
      PatientPosition: 'FFS',
      StudyInstanceUID: identity.studyInstanceUID,
      SeriesInstanceUID: identity.seriesInstanceUID,
      StudyID: '1',
      SeriesNumber: series.seriesNumber ?? 2,
      InstanceNumber: instance,
      ImagePositionPatient: [originX, originY, z],
      ImageOrientationPatient: [1, 0, 0, 0, 1, 0],
      FrameOfReferenceUID: identity.frameOfReferenceUID,
      PositionReferenceIndicator: '',
      SliceLocation: z,
      SamplesPerPixel: 1,
      PhotometricInterpretation: 'MONOCHROME2',
      Rows: exam.rows,
      Columns: exam.columns,
      PixelSpacing: [exam.pixelSpacing[0], exam.pixelSpacing[1]],
      BitsAllocated: 16,
      BitsStored: 16,
      HighBit: 15,
      PixelRepresentation: 1,
      WindowCenter: -600,
      WindowWidth: 1500,
      RescaleIntercept: RESCALE_INTERCEPT,
      RescaleSlope: 1,
      RescaleType: 'HU',
      ...(series.convolutionKernel === undefined ? {} : { ConvolutionKernel: series.convolutionKernel }),
      PixelData: [pixels.buffer],
      _vrMap: { PixelData: 'OW' },
    };

    const meta: Record<string, unknown> = {
      FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
      MediaStorageSOPClassUID: CT_IMAGE_STORAGE,
      MediaStorageSOPInstanceUID: sopInstanceUID,
      TransferSyntaxUID: EXPLICIT_VR_LITTLE_ENDIAN,
      ImplementationClassUID: '2.25.98765432101234567890',
      ImplementationVersionName: 'COVNET_SYNTH_1',
    };

    const dicomDict = new dcmjs.data.DicomDict(dcmjs.data.DicomMetaDictionary.denaturalizeDataset(meta));
    dicomDict.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset(dataset);
    const path = `${examDir}/${series.fileNamePrefix ?? ''}${String(instance).padStart(4, '0')}.dcm`;
    await writeFile(path, Buffer.from(dicomDict.write()));
    paths.push(path);
  }
  return paths;
}
