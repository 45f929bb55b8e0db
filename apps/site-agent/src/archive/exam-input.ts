import { readdir } from 'node:fs/promises';
import { extname, join } from 'node:path';
import {
  loadImageFile,
  loadSeriesVolume,
  preprocessImage2D,
  preprocessVolume,
  scanArchive,
  selectLungSeries,
  type ModelInput,
} from '@covnet/imaging';
import { log } from '../log';

/** Model input geometry, carried in every checkpoint's metadata. */
export interface InputSpec {
  backbone: string;
  inputSize: number;
  maxSlices: number;
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);

/**
 * Turns one exam folder into model input. A folder holding one PNG or JPEG file is a
 * one-slice exam. Any other folder is read as DICOM, and `selectLungSeries` picks the
 * axial lung series among its CT series. The reasons for the choice are logged.
 * @throws Error naming the folder when it holds no usable image or no axial CT series.
 */
export async function loadExamInput(examDir: string, spec: InputSpec): Promise<ModelInput> {
  const entries = await readdir(examDir);
  const images = entries.filter((name) => IMAGE_EXTENSIONS.has(extname(name).toLowerCase()));
  if (images.length === 1 && entries.length === 1) {
    const image = await loadImageFile(join(examDir, images[0]));
    return preprocessImage2D(image.gray, image.width, image.height, spec.inputSize);
  }
  return loadDicomExam(examDir, spec);
}

async function loadDicomExam(examDir: string, spec: InputSpec): Promise<ModelInput> {
  const report = await scanArchive(examDir);
  const choice = selectLungSeries(report.series);
  if (choice.chosen === undefined) {
    const skipped = report.skipped.slice(0, 3).map((file) => `${file.path}: ${file.reason}`);
    const details = [...choice.reasons, ...skipped].join('; ');
    throw new Error(`exam folder ${examDir} has no usable axial CT series (${details})`);
  }
  log.info({ exam: examDir, series: choice.chosen.seriesInstanceUID, reasons: choice.reasons }, 'lung series chosen');
  const volume = await loadSeriesVolume(choice.chosen.files);
  return preprocessVolume(volume, { size: spec.inputSize, maxSlices: spec.maxSlices });
}
