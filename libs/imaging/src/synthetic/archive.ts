import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EXAM_LABELS, type ExamLabel } from './labels';
import { synthesizeExam } from './phantom';
import { deriveSeed, SeededRandom } from './prng';
import { makeUid, writeExamAsDicom } from './write-dicom';

export type ExamSplit = 'train' | 'val';

export interface SyntheticArchiveOptions {
  exams: number;
  seed: number;
  /** Relative class frequencies (default equal); exam counts follow by largest remainder. */
  classMix?: Record<ExamLabel, number>;
  /** Fraction of each class put in the val split (default 0.2; at least one exam when a class has two or more). */
  valFraction?: number;
  /** Rows and columns of every slice (default 128). */
  rows?: number;
  /** Slices per exam (default: drawn per exam between 12 and 24). */
  slices?: number;
  /** InstitutionName written into every file (default "Synthetic Hospital"). */
  siteName?: string;
}

export interface SyntheticExamRecord {
  examId: string;
  label: ExamLabel;
  split: ExamSplit;
  slices: number;
  dir: string;
}

/**
 * Writes a labelled synthetic archive: `outDir/<examId>/<nnnn>.dcm`, one CT file per slice,
 * and `outDir/labels.csv` with the header `exam,label,split`. Labels live only in the CSV,
 * never in the DICOM files. The same options always produce the same files.
 * @throws when `exams` is not a positive integer, `valFraction` is outside [0, 1), or the
 *   class mix has no positive weight.
 */
export async function writeSyntheticArchive(outDir: string, opts: SyntheticArchiveOptions): Promise<{ exams: SyntheticExamRecord[] }> {
  if (!Number.isInteger(opts.exams) || opts.exams < 1) {
    throw new RangeError(`exams must be a positive integer, got ${opts.exams}`);
  }
  const valFraction = opts.valFraction ?? 0.2;
  if (!(valFraction >= 0 && valFraction < 1)) {
    throw new RangeError(`valFraction must be in [0, 1), got ${valFraction}`);
  }

  const plan = new SeededRandom(deriveSeed(opts.seed, 0x7fffffff));
  const labels = plan.shuffle(assignLabels(opts.exams, opts.classMix ?? { covid19: 1, cap: 1, non_pneumonia: 1 }));
  const splits = assignSplits(labels, valFraction, plan);

  await mkdir(outDir, { recursive: true });
  const records: SyntheticExamRecord[] = [];
  for (let i = 0; i < opts.exams; i++) {
    const number = String(i + 1).padStart(4, '0');
    const examId = `exam-${number}`;
    const examSeed = deriveSeed(opts.seed, i);
    const exam = synthesizeExam({ seed: examSeed, label: labels[i], size: opts.rows, slices: opts.slices });

    const uidRandom = new SeededRandom(deriveSeed(examSeed, 1));
    const dir = join(outDir, examId);
    await mkdir(dir, { recursive: true });
    await writeExamAsDicom(
      exam,
      {
        patientName: `SYNTH^${number}`,
        patientID: `SYNTH${number}`,
        studyInstanceUID: makeUid(uidRandom),
        seriesInstanceUID: makeUid(uidRandom),
        frameOfReferenceUID: makeUid(uidRandom),
        institutionName: opts.siteName ?? 'Synthetic Hospital',
      },
      dir,
      uidRandom,
    );
    records.push({ examId, label: labels[i], split: splits[i], slices: exam.slices, dir });
  }

  const csv = ['exam,label,split', ...records.map((record) => `${record.examId},${record.label},${record.split}`)].join('\n') + '\n';
  await writeFile(join(outDir, 'labels.csv'), csv);
  return { exams: records };
}

function assignLabels(count: number, mix: Record<ExamLabel, number>): ExamLabel[] {
  const weights = EXAM_LABELS.map((label) => Math.max(0, mix[label] ?? 0));
  const total = weights.reduce((sum, weight) => sum + weight, 0);
  if (!(total > 0)) throw new RangeError(`classMix needs at least one positive weight, got ${JSON.stringify(mix)}`);

  const exact = weights.map((weight) => (weight / total) * count);
  const counts = exact.map(Math.floor);
  const byRemainder = exact.map((value, index) => ({ index, remainder: value - Math.floor(value) })).sort((a, b) => b.remainder - a.remainder || a.index - b.index);
  const missing = count - counts.reduce((sum, n) => sum + n, 0);
  for (let i = 0; i < missing; i++) counts[byRemainder[i].index]++;

  return EXAM_LABELS.flatMap((label, index) => Array<ExamLabel>(counts[index]).fill(label));
}

function assignSplits(labels: readonly ExamLabel[], valFraction: number, random: SeededRandom): ExamSplit[] {
  const splits: ExamSplit[] = labels.map(() => 'train');
  for (const label of EXAM_LABELS) {
    const members = random.shuffle(labels.flatMap((value, index) => (value === label ? [index] : [])));
    let valCount = Math.round(members.length * valFraction);
    if (valCount === 0 && valFraction > 0 && members.length >= 2) valCount = 1;
    for (const index of members.slice(0, valCount)) splits[index] = 'val';
  }
  return splits;
}
