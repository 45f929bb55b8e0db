import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isExamLabel, type ExamLabel } from '../synthetic/labels';

export type LabelSplit = 'train' | 'val' | 'test';

/** One labelled exam of an archive. */
export interface LabelledExam {
  exam: string;
  label: ExamLabel;
  split: LabelSplit;
  /** Directory of the exam's files: `<archiveDir>/<exam>`. */
  dir: string;
}

/** A labels.csv with invalid lines; `problems` lists each as "line N: reason". */
export class LabelsFileError extends Error {
  constructor(
    readonly path: string,
    readonly problems: string[],
  ) {
    super(`${path} is invalid:\n${problems.join('\n')}`);
    this.name = 'LabelsFileError';
  }
}

const HEADER = 'exam,label,split';
const SPLITS: readonly LabelSplit[] = ['train', 'val', 'test'];

/**
 * Reads `<archiveDir>/labels.csv` (header `exam,label,split`) and checks every line: three
 * fields, a known class, a split of train, val or test, no repeated exam, and an existing
 * exam folder. Blank lines are ignored.
 * @throws LabelsFileError listing every invalid line with its number and reason; Error when
 *   the file is missing or cannot be read.
 */
export async function readLabels(archiveDir: string): Promise<LabelledExam[]> {
  const path = join(archiveDir, 'labels.csv');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(missing ? `archive ${archiveDir} has no labels.csv; write one with the header "${HEADER}"` : `${path} cannot be read: ${(error as Error).message}`);
  }
  const lines = text.split(/\r?\n/);
  const problems: string[] = [];

  if (lines[0]?.trim() !== HEADER) {
    throw new LabelsFileError(path, [`line 1: header is "${lines[0] ?? ''}", expected "${HEADER}"`]);
  }

  const exams: LabelledExam[] = [];
  const seen = new Map<string, number>();
  for (let i = 1; i < lines.length; i++) {
    const lineNumber = i + 1;
    const line = lines[i].trim();
    if (line === '') continue;

    const fields = line.split(',').map((field) => field.trim());
    const [exam, label, split] = fields;
    if (fields.length > 3) {
      problems.push(`line ${lineNumber}: ${fields.length} fields, expected 3 (exam,label,split)`);
      continue;
    }
    if (!exam) {
      problems.push(`line ${lineNumber}: exam is missing`);
      continue;
    }
    if (!label || !isExamLabel(label)) {
      problems.push(`line ${lineNumber}: unknown class "${label ?? ''}" for exam ${exam}, expected covid19, cap or non_pneumonia`);
      continue;
    }
    if (!split) {
      problems.push(`line ${lineNumber}: split is missing for exam ${exam}, expected train, val or test`);
      continue;
    }
    if (!(SPLITS as readonly string[]).includes(split)) {
      problems.push(`line ${lineNumber}: unknown split "${split}" for exam ${exam}, expected train, val or test`);
      continue;
    }
    const firstLine = seen.get(exam);
    if (firstLine !== undefined) {
      problems.push(`line ${lineNumber}: exam ${exam} is already listed on line ${firstLine}`);
      continue;
    }
    seen.set(exam, lineNumber);

    const dir = join(archiveDir, exam);
    const isDirectory = await stat(dir).then((info) => info.isDirectory(), () => false);
    if (!isDirectory) {
      problems.push(`line ${lineNumber}: exam folder ${dir} not found`);
      continue;
    }
    exams.push({ exam, label, split: split as LabelSplit, dir });
  }

  if (problems.length > 0) throw new LabelsFileError(path, problems);
  return exams;
}
