export { DicomReadError, formatTag, tagLabel, type DicomRejectCode } from './dicom/errors';
export type { CtSliceHeader } from './dicom/ct-header';
export { parseCtFile, parseCtFrames, parseCtSlice, readCtFile, readCtFrames, readCtSlice, type CtFile, type CtSlice, type ReadLimits } from './dicom/read-slice';
export { DicomDataset, parseDicom, type DicomElement, type ParsedDicom } from './dicom/parser';
export { loadCodec } from './dicom/codecs';
export {
  describeTransferSyntax,
  findTransferSyntax,
  findUncompressedSyntax,
  type PixelEncoding,
  type TransferSyntax,
  type UncompressedSyntax,
} from './dicom/transfer-syntax';

export { assembleSeries, type SeriesAssembly, type SeriesGeometry, type SeriesProblemCode } from './series/assemble';
export { scanArchive, type RejectedSeries, type ScanOptions, type ScanReport, type SeriesSummary, type SkippedFile } from './series/scan-archive';
export { ScanIndex, SCAN_INDEX_VERSION, type ScannedFile } from './series/scan-index';
export { loadSeriesVolume, resampleAlongNormal, SeriesAssemblyError, type Volume } from './series/volume';
export { DecodePool, type FramePlacement, type ParsedBatch, type ParsedFile } from './series/decode-pool';
export { groupSlices, type SliceGroup } from './series/group';
export { AXIAL_TOLERANCE_DEGREES, isSharpKernel, selectLungSeries, type SeriesChoice } from './series/select-series';

export { computeLungMask, type LungMask, type LungMaskOptions } from './preprocess/lung-mask';
export { lungCropBox, PREPROCESS_VERSION, preprocessImage2D, preprocessVolume, selectSlices, type ModelInput, type PreprocessOptions } from './preprocess/preprocess';
export type { CropBox } from './preprocess/resample';
export { renderLungPreview, type PreviewImage } from './preprocess/preview';

export { ImageReadError, loadImageFile, type GrayImage } from './images/load-image';

export { EXAM_LABELS, isExamLabel, type ExamLabel } from './synthetic/labels';
export { synthesizeExam, type SyntheticExam, type SynthesizeOptions } from './synthetic/phantom';
export { deriveSeed, SeededRandom } from './synthetic/prng';
export { makeUid, writeExamAsDicom, type SyntheticExamIdentity, type SyntheticSeriesOptions } from './synthetic/write-dicom';
export { writeSyntheticArchive, type ExamSplit, type SyntheticArchiveOptions, type SyntheticExamRecord } from './synthetic/archive';

export { LabelsFileError, readLabels, type LabelledExam, type LabelSplit } from './labels/read-labels';

export { NiftiReadError, parseNiftiHeader, parseNiftiVolume, readNiftiVolume, type NiftiHeader } from './nifti/read-nifti';
