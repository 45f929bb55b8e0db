import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type DecodePool,
  loadImageFile,
  loadSeriesVolume,
  preprocessImage2D,
  PREPROCESS_VERSION,
  preprocessVolume,
  readNiftiVolume,
  scanArchive,
  selectLungSeries,
  selectSlices,
  type ModelInput,
  type Volume,
} from '@covnet/imaging';
import { log } from '../log';
import { PreprocessCache } from './preprocess-cache';

/** Model input geometry, carried in every checkpoint's metadata. */
export interface InputSpec {
  backbone: string;
  inputSize: number;
  maxSlices: number;
}

/** Kind of files an exam folder holds, which decides how it is read. */
export type ExamFormat = 'dicom' | 'nifti' | 'images';

const IMAGE_PATTERN = /\.(png|jpe?g)$/i;
const NIFTI_PATTERN = /\.nii(\.gz)?$/i;
// Text files that converters such as dcm2niix write beside a NIfTI volume (e.g. a BIDS .json sidecar).
const SIDECAR_PATTERN = /\.(json|txt|md|csv|tsv)$/i;

/**
 * Decides how an exam folder is read from the names of its files (hidden files such as
 * .DS_Store are ignored). One .nii or .nii.gz file, alone or beside text sidecars (.json,
 * .txt, .md, .csv, .tsv), is a NIfTI volume.
 * PNG and JPEG files and nothing else are an image exam. Anything else is read as DICOM,
 * whatever the file names.
 * @returns the format and the files to read, sorted by name.
 */
export async function classifyExamFolder(examDir: string): Promise<{ format: ExamFormat; files: string[] }> {
  const visible = (await readdir(examDir, { withFileTypes: true })).filter((entry) => !entry.name.startsWith('.'));
  const names: string[] = [];
  for (const entry of visible) if (await isFileOrLinkToFile(examDir, entry)) names.push(entry.name);
  names.sort(compareFileNames);
  // A subfolder (e.g. a DICOMDIR layout) means the folder is read as DICOM.
  const onlyFiles = names.length === visible.length;
  const files = names.map((name) => join(examDir, name));
  const volumes = files.filter((path) => NIFTI_PATTERN.test(path));
  const sidecarsOnly = files.every((path) => NIFTI_PATTERN.test(path) || SIDECAR_PATTERN.test(path));
  if (onlyFiles && volumes.length === 1 && sidecarsOnly) return { format: 'nifti', files: volumes };
  if (onlyFiles && names.length > 0 && names.every((name) => IMAGE_PATTERN.test(name))) return { format: 'images', files };
  return { format: 'dicom', files };
}

/**
 * Turns one exam folder into model input (see classifyExamFolder for how the format is chosen).
 * A NIfTI volume and a DICOM series go through the same lung preprocessing. For DICOM,
 * `selectLungSeries` picks the axial lung series among the folder's CT series and its reasons
 * are logged. PNG and JPEG files are slices that are already windowed: one file is a one-slice
 * exam, and several files are one exam whose slices follow the file names in natural order
 * ("2.png" before "10.png"), evenly thinned to at most maxSlices. With a cache, the input is
 * read from it when no file of the folder has changed size or mtime, and stored after preprocessing.
 * With `decodePool`, a DICOM series is decoded on the pool it returns.
 * @throws Error naming the folder when it contains no usable volume, series or image.
 */
export async function loadExamInput(examDir: string, spec: InputSpec, options: { cache?: PreprocessCache; decodePool?: () => DecodePool } = {}): Promise<ModelInput> {
  const { cache, decodePool } = options;
  if (cache === undefined) return readExamInput(examDir, spec, decodePool);

  const key = PreprocessCache.key({ pipeline: PREPROCESS_VERSION, inputSize: spec.inputSize, maxSlices: spec.maxSlices, files: await fingerprint(examDir) });
  const cached = await cache.get(key);
  if (cached !== undefined) return cached;
  const input = await readExamInput(examDir, spec, decodePool);
  try {
    await cache.put(key, input);
  } catch (error) {
    // The cache only saves time, so a full or read-only disk must not stop training.
    log.warn({ exam: examDir, cacheDir: cache.dir, error: (error as Error).message }, 'preprocessed exam not cached');
  }
  return input;
}

// Every file under the exam folder with its size and mtime, sorted by path. It covers every
// series of the exam, not only the chosen one, so adding or changing any file of the exam
// (which could change the choice) invalidates the cached input.
async function fingerprint(examDir: string): Promise<[string, number, number][]> {
  const entries = await readdir(examDir, { recursive: true, withFileTypes: true });
  const files: string[] = [];
  for (const entry of entries) if (await isFileOrLinkToFile(entry.parentPath, entry)) files.push(join(entry.parentPath, entry.name));
  files.sort();
  return Promise.all(
    files.map(async (path) => {
      const { size, mtimeMs } = await stat(path);
      return [path, size, mtimeMs] as [string, number, number];
    }),
  );
}

// Counts a symbolic link to a regular file as that file, because some archives (the demo's
// COVID-CT sites among them) link to their images. A broken link is no file.
async function isFileOrLinkToFile(dir: string, entry: Dirent): Promise<boolean> {
  if (entry.isFile()) return true;
  if (!entry.isSymbolicLink()) return false;
  return stat(join(dir, entry.name)).then(
    (target) => target.isFile(),
    () => false,
  );
}

async function readExamInput(examDir: string, spec: InputSpec, decodePool?: () => DecodePool): Promise<ModelInput> {
  const { format, files } = await classifyExamFolder(examDir);
  switch (format) {
    case 'nifti':
      return preprocessExamVolume(await readNiftiVolume(files[0]), spec);
    case 'images':
      return loadImageExam(files, spec);
    case 'dicom':
      return preprocessExamVolume(await loadDicomVolume(examDir, decodePool), spec);
  }
}

function preprocessExamVolume(volume: Volume, spec: InputSpec): ModelInput {
  return preprocessVolume(volume, { size: spec.inputSize, maxSlices: spec.maxSlices });
}

async function loadDicomVolume(examDir: string, decodePool?: () => DecodePool): Promise<Volume> {
  const pool = decodePool?.();
  const report = await scanArchive(examDir, { headersOnly: true, pool });
  const choice = selectLungSeries(report.series);
  if (choice.chosen === undefined) {
    const skipped = report.skipped.slice(0, 3).map((file) => `${file.path}: ${file.reason}`);
    const details = [...choice.reasons, ...skipped].join('; ');
    throw new Error(`exam folder ${examDir} has no usable axial CT series (${details})`);
  }
  log.info({ exam: examDir, series: choice.chosen.seriesInstanceUID, reasons: choice.reasons }, 'lung series chosen');
  return loadSeriesVolume(choice.chosen.files, {}, { pool });
}

async function loadImageExam(files: string[], spec: InputSpec): Promise<ModelInput> {
  const size = spec.inputSize;
  if (files.length === 1) {
    const image = await loadImageFile(files[0]);
    return preprocessImage2D(image.gray, image.width, image.height, size);
  }

  // Each image is resized on its own: the files need not share a size, and no lung crop
  // applies to a rendering that is already windowed.
  const sliceIndices = selectSlices(files.length, spec.maxSlices);
  const data = new Float32Array(sliceIndices.length * size * size);
  for (const [slice, fileIndex] of sliceIndices.entries()) {
    const image = await loadImageFile(files[fileIndex]);
    data.set(preprocessImage2D(image.gray, image.width, image.height, size).data, slice * size * size);
  }
  return { slices: sliceIndices.length, size, data, sliceIndices, cropSource: 'image' };
}

// Natural order: runs of digits compare as numbers, so slice-2 comes before slice-10.
function compareFileNames(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
