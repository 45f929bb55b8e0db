import { join } from 'node:path';
import { DecodePool, readLabels, type ModelInput } from '@covnet/imaging';
import { CLASS_NAMES, type ClassCounts, type ClassName } from '@covnet/protocol';
import { log } from '../log';
import { loadExamInput, type InputSpec } from './exam-input';
import { PreprocessCache } from './preprocess-cache';

export { loadExamInput, type InputSpec } from './exam-input';

export interface ExamRecord {
  examId: string;
  label: ClassName;
  split: 'train' | 'val';
  dir: string;
}

/** An exam that `prepare` left out, with the reason. */
export interface SkippedExam {
  examId: string;
  dir: string;
  split: 'train' | 'val';
  reason: string;
}

/** Model inputs of an archive's train and val exams, and the exams that could not be read. */
export interface PreparedArchive {
  train: PreparedExam[];
  val: PreparedExam[];
  skipped: SkippedExam[];
}

export interface PreparedExam {
  examId: string;
  label: 0 | 1 | 2;
  input: ModelInput;
}

/**
 * A hospital's archive as the agent sees it: `labels.csv` plus one folder per
 * exam, holding DICOM files, one NIfTI volume, or PNG/JPEG slices (see loadExamInput).
 * Preprocessed inputs are kept in memory per input geometry, so later rounds read
 * no image file. With a cache folder they are also kept on disk per exam, so later
 * runs of the agent read no image file either.
 */
export class SiteArchive {
  private prepared: (PreparedArchive & { key: string }) | null = null;

  private constructor(
    readonly dir: string,
    readonly exams: ExamRecord[],
    private readonly cache: PreprocessCache | undefined,
    private readonly decodeThreads: number,
  ) {}

  /**
   * Reads and validates `labels.csv`; errors name the line.
   * @param options.cacheDir folder of the agent's cache (see defaultCacheDir); preprocessed
   *   exams go to its `preprocessed` subfolder. Without it nothing is written to disk.
   * @param options.decodeThreads worker threads that decode DICOM series in `prepare`
   *   (default 1: decoding on the calling thread).
   */
  static async open(dir: string, options: { cacheDir?: string; decodeThreads?: number } = {}): Promise<SiteArchive> {
    const labels = await readLabels(dir);
    // Test exams stay out of the federation: neither training nor the
    // validation reported each round may touch them.
    const exams: ExamRecord[] = [];
    for (const e of labels) {
      if (e.split === 'train' || e.split === 'val') exams.push({ examId: e.exam, label: e.label, split: e.split, dir: e.dir });
    }
    const held = labels.length - exams.length;
    if (held > 0) log.info({ archive: dir, testExams: held }, 'test exams held out of the federation');
    const cache = options.cacheDir === undefined ? undefined : new PreprocessCache(join(options.cacheDir, 'preprocessed'));
    const removed = (await cache?.removeStaleTempFiles()) ?? [];
    if (removed.length > 0) {
      log.warn({ cacheDir: cache!.dir, files: removed }, `removed ${removed.length} temporary files that an interrupted cache write left in ${cache!.dir}`);
    }
    return new SiteArchive(dir, exams, cache, options.decodeThreads ?? 1);
  }

  counts(split: 'train' | 'val'): ClassCounts {
    const counts: ClassCounts = { covid19: 0, cap: 0, non_pneumonia: 0 };
    for (const exam of this.exams) if (exam.split === split) counts[exam.label] += 1;
    return counts;
  }

  /** Whether `prepare(spec)` would return cached exams without reading the archive. */
  isPrepared(spec: InputSpec): boolean {
    return this.prepared?.key === `${spec.inputSize}x${spec.maxSlices}`;
  }

  /** Number of exams in the train and val splits. */
  get examCount(): number {
    return this.exams.length;
  }

  /**
   * Loads and preprocesses every exam for `spec`, once per spec; `onProgress` receives the
   * number of exams done. An exam that cannot be read (a corrupt slice, no usable series) is
   * left out with a warning naming it and the reason, and listed in `skipped`. One bad exam
   * thus does not stop the site from training on the others.
   * @throws Error when no exam at all can be read, with the first reasons.
   */
  async prepare(spec: InputSpec, onProgress?: (done: number) => void): Promise<PreparedArchive> {
    const key = `${spec.inputSize}x${spec.maxSlices}`;
    if (this.prepared?.key === key) return this.prepared;
    const train: PreparedExam[] = [];
    const val: PreparedExam[] = [];
    const skipped: SkippedExam[] = [];
    const started = Date.now();
    // The pool starts on the first exam that is not cached, so a fully cached archive starts no thread.
    let pool: DecodePool | undefined;
    const decodePool = this.decodeThreads > 1 ? () => (pool ??= new DecodePool(this.decodeThreads)) : undefined;
    try {
      for (const [done, exam] of this.exams.entries()) {
        try {
          const input = await loadExamInput(exam.dir, spec, { cache: this.cache, decodePool });
          const prepared: PreparedExam = { examId: exam.examId, label: CLASS_NAMES.indexOf(exam.label) as 0 | 1 | 2, input };
          (exam.split === 'train' ? train : val).push(prepared);
        } catch (error) {
          const reason = (error as Error).message;
          skipped.push({ examId: exam.examId, dir: exam.dir, split: exam.split, reason });
          log.warn({ exam: exam.examId, dir: exam.dir, split: exam.split, error: reason }, 'exam left out: it cannot be read');
        }
        onProgress?.(done + 1);
      }
    } finally {
      await pool?.close();
    }
    if (train.length + val.length === 0 && skipped.length > 0) {
      const reasons = skipped.slice(0, 3).map((exam) => `${exam.examId}: ${exam.reason}`);
      throw new Error(`no exam of archive ${this.dir} can be read (${reasons.join('; ')})`);
    }
    log.info({ exams: train.length + val.length, skipped: skipped.length, ms: Date.now() - started, inputSize: spec.inputSize }, 'preprocessed archive');
    this.prepared = { key, train, val, skipped };
    return this.prepared;
  }
}
