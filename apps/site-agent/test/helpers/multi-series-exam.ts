import { SeededRandom, makeUid, synthesizeExam, writeExamAsDicom, type SyntheticExam } from '@covnet/imaging';

/** Files of each series written into one exam folder by writeMultiSeriesExam. */
export interface MultiSeriesExam {
  scout: string[];
  softTissue: string[];
  lung: string[];
}

/**
 * Writes, into one folder, what a scanner sends for one chest exam: a one-slice localizer,
 * a soft-tissue reconstruction (kernel B30f, 14 slices) and a lung reconstruction (kernel
 * B70f, 13 slices). The soft-tissue series has the most slices, so picking by slice count
 * alone would choose it. The two reconstructions are phantoms of different seeds, so their
 * model inputs differ.
 */
export async function writeMultiSeriesExam(dir: string, seed: number): Promise<MultiSeriesExam> {
  const random = new SeededRandom(seed);
  const study = makeUid(random);
  const frame = makeUid(random);
  const identity = (exam: SyntheticExam) => ({
    patientName: 'SYNTH^MULTI',
    patientID: `SYNTH${exam.seed}`,
    studyInstanceUID: study,
    seriesInstanceUID: makeUid(random),
    frameOfReferenceUID: frame,
    institutionName: 'Synthetic Hospital',
  });

  const scoutExam = synthesizeExam({ seed: seed + 1, label: 'non_pneumonia', slices: 1, size: 48, sliceSpacing: 5 });
  const softExam = synthesizeExam({ seed: seed + 2, label: 'non_pneumonia', slices: 14, size: 48, sliceSpacing: 5 });
  const lungExam = synthesizeExam({ seed: seed + 3, label: 'covid19', slices: 13, size: 48, sliceSpacing: 5 });

  const scout = await writeExamAsDicom(scoutExam, identity(scoutExam), dir, random, {
    imageType: ['ORIGINAL', 'PRIMARY', 'LOCALIZER'],
    seriesDescription: 'Topogram',
    seriesNumber: 1,
    fileNamePrefix: 'scout-',
  });
  const softTissue = await writeExamAsDicom(softExam, identity(softExam), dir, random, {
    convolutionKernel: 'B30f',
    seriesDescription: 'Chest soft tissue',
    seriesNumber: 2,
    fileNamePrefix: 'soft-',
  });
  const lung = await writeExamAsDicom(lungExam, identity(lungExam), dir, random, {
    convolutionKernel: 'B70f',
    seriesDescription: 'Chest lung',
    seriesNumber: 3,
    fileNamePrefix: 'lung-',
  });
  return { scout, softTissue, lung };
}
