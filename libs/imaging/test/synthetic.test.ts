import { mkdtemp, readdir, readFile, rm, truncate, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  computeLungMask,
  deriveSeed,
  DicomReadError,
  loadSeriesVolume,
  readCtSlice,
  readLabels,
  scanArchive,
  SeededRandom,
  synthesizeExam,
  writeSyntheticArchive,
  type SyntheticExam,
  type SyntheticExamRecord,
} from '../src';

const SEED = 20200301;
let workDir: string;
let archiveDir: string;
let records: SyntheticExamRecord[];

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'covnet-imaging-'));
  archiveDir = join(workDir, 'site-a');
  ({ exams: records } = await writeSyntheticArchive(archiveDir, { exams: 6, seed: SEED, rows: 64, valFraction: 0.34 }));
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

describe('SeededRandom', () => {
  it('repeats its sequence for a seed', () => {
    const a = new SeededRandom(42);
    const b = new SeededRandom(42);
    const first = Array.from({ length: 5 }, () => a.nextUint32());
    expect(Array.from({ length: 5 }, () => b.nextUint32())).toEqual(first);
    expect(new SeededRandom(43).nextUint32()).not.toBe(first[0]);
  });

  it('stays within [0, 1)', () => {
    const random = new SeededRandom(7);
    for (let i = 0; i < 10_000; i++) {
      const value = random.next();
      expect(value).toBeGreaterThanOrEqual(0);
      expect(value).toBeLessThan(1);
    }
  });
});

describe('writeSyntheticArchive', () => {
  describe('when re-reading the written files', () => {
    it('returns the exact phantom HU', async () => {
      for (const [index, record] of records.entries()) {
        const exam = synthesizeExam({ seed: deriveSeed(SEED, index), label: record.label, size: 64 });
        const files = (await readdir(record.dir)).map((name) => join(record.dir, name));
        const volume = await loadSeriesVolume(files);
        expect(volume.slices).toBe(exam.slices);
        expect(volume.rows).toBe(64);
        expect(volume.sliceSpacing).toBeCloseTo(exam.sliceSpacing, 9);
        expect(volume.pixelSpacing).toEqual(exam.pixelSpacing);
        let mismatches = 0;
        for (let i = 0; i < exam.hu.length; i++) if (volume.hu[i] !== exam.hu[i]) mismatches++;
        expect(mismatches).toBe(0);
        expect(volume.hu.length).toBe(exam.hu.length);
      }
    });

    it('writes instance 1 as the most superior slice', async () => {
      const first = await readCtSlice(join(records[0].dir, '0001.dcm'));
      const last = await readCtSlice(join(records[0].dir, `${String(records[0].slices).padStart(4, '0')}.dcm`));
      expect(first.header.imagePositionPatient[2]).toBeGreaterThan(last.header.imagePositionPatient[2]);
      expect(first.header.rescaleIntercept).toBe(-1024);
      expect(first.header.pixelRepresentation).toBe(1);
      expect(first.header.transferSyntaxUID).toBe('1.2.840.10008.1.2.1');
    });

    it('scans one series per exam', async () => {
      const report = await scanArchive(archiveDir);
      expect(report.series).toHaveLength(6);
      expect(report.rejected).toEqual([]);
      expect(report.skipped.map((entry) => entry.code)).toEqual(['not-dicom']);
      expect(report.skipped[0].path).toBe(join(archiveDir, 'labels.csv'));
    });
  });

  describe('when reading labels.csv', () => {
    it('lists every exam with its split', async () => {
      const csv = await readFile(join(archiveDir, 'labels.csv'), 'utf8');
      const expected = ['exam,label,split', ...records.map((record) => `${record.examId},${record.label},${record.split}`)].join('\n') + '\n';
      expect(csv).toBe(expected);

      const labelled = await readLabels(archiveDir);
      expect(labelled.map((entry) => [entry.exam, entry.label, entry.split, entry.dir])).toEqual(records.map((record) => [record.examId, record.label, record.split, record.dir]));
    });

    it('balances classes and splits', () => {
      // Equal class mix over 6 exams gives 2 per class; 0.34 x 2 rounds to 1 val exam per class.
      for (const label of ['covid19', 'cap', 'non_pneumonia']) {
        const members = records.filter((record) => record.label === label);
        expect(members).toHaveLength(2);
        expect(members.filter((record) => record.split === 'val')).toHaveLength(1);
      }
    });
  });

  describe('when written twice with one seed', () => {
    it('produces identical bytes', async () => {
      const again = join(workDir, 'again');
      await writeSyntheticArchive(again, { exams: 2, seed: SEED, rows: 64 });
      const once = join(workDir, 'once');
      await writeSyntheticArchive(once, { exams: 2, seed: SEED, rows: 64 });
      for (const exam of ['exam-0001', 'exam-0002']) {
        const names = await readdir(join(once, exam));
        expect(await readdir(join(again, exam))).toEqual(names);
        for (const name of names) {
          const a = await readFile(join(once, exam, name));
          const b = await readFile(join(again, exam, name));
          expect(a.equals(b)).toBe(true);
        }
      }
      expect(await readFile(join(once, 'labels.csv'), 'utf8')).toBe(await readFile(join(again, 'labels.csv'), 'utf8'));
    });

    it('changes with the seed', async () => {
      const other = join(workDir, 'other');
      await writeSyntheticArchive(other, { exams: 1, seed: SEED + 1, rows: 64 });
      const a = await readFile(join(other, 'exam-0001', '0001.dcm'));
      const b = await readFile(join(archiveDir, 'exam-0001', '0001.dcm'));
      expect(a.equals(b)).toBe(false);
    });
  });
});

describe('readCtSlice on damaged synthetic files', () => {
  describe('when PixelData is cut short', () => {
    it('rejects the file as truncated', async () => {
      const path = join(workDir, 'truncated.dcm');
      await copyFile(join(records[0].dir, '0001.dcm'), path);
      const { size } = await import('node:fs').then((fs) => fs.statSync(path));
      await truncate(path, size - 100);

      const error = await readCtSlice(path).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(DicomReadError);
      expect((error as DicomReadError).code).toBe('truncated-pixel-data');
      expect((error as DicomReadError).message).toContain(path);
      expect((error as DicomReadError).message).toContain('(7FE0,0010)');
    });
  });

  describe('when a series holds two slices at one position', () => {
    it('rejects the series', async () => {
      const dir = join(workDir, 'duplicate');
      await writeSyntheticArchive(dir, { exams: 1, seed: SEED, rows: 64 });
      await copyFile(join(dir, 'exam-0001', '0002.dcm'), join(dir, 'exam-0001', 'copy-of-0002'));

      const report = await scanArchive(dir);
      expect(report.series).toEqual([]);
      expect(report.rejected).toHaveLength(1);
      expect(report.rejected[0].code).toBe('duplicate-position');
      expect(report.rejected[0].reason).toContain('copy-of-0002');
    });
  });

  describe('when a series mixes image sizes', () => {
    it('rejects the series', async () => {
      // The same seed gives the same UIDs whatever the size, so a 32-row slice joins the 64-row series.
      const big = join(workDir, 'mixed');
      const small = join(workDir, 'mixed-small');
      await writeSyntheticArchive(big, { exams: 1, seed: SEED, rows: 64 });
      await writeSyntheticArchive(small, { exams: 1, seed: SEED, rows: 32 });
      await copyFile(join(small, 'exam-0001', '0001.dcm'), join(big, 'exam-0001', 'small.dcm'));

      const report = await scanArchive(big);
      expect(report.rejected.map((entry) => entry.code)).toEqual(['inconsistent-size']);
    });
  });
});

describe('synthesizeExam', () => {
  const volumeOf = (exam: SyntheticExam) => ({ hu: exam.hu, slices: exam.slices, rows: exam.rows, columns: exam.columns, pixelSpacing: exam.pixelSpacing, sliceSpacing: exam.sliceSpacing });

  function lungStats(exam: SyntheticExam): { meanHu: number; denseVoxels: number } {
    const { rows, columns } = exam;
    let sum = 0;
    let count = 0;
    let denseVoxels = 0;
    for (let k = 0; k < exam.slices; k++) {
      for (let row = 1; row < rows - 1; row++) {
        for (let col = 1; col < columns - 1; col++) {
          const index = (k * rows + row) * columns + col;
          if (exam.lungMask[index] === 0) continue;
          sum += exam.hu[index];
          count++;
          // A 3x3 mean above -100 HU marks consolidation; thin vessels average out below it.
          let local = 0;
          for (let dr = -1; dr <= 1; dr++) for (let dc = -1; dc <= 1; dc++) local += exam.hu[index + dr * columns + dc];
          if (local / 9 > -100) denseVoxels++;
        }
      }
    }
    return { meanHu: sum / count, denseVoxels };
  }

  describe('when the label changes and the seed does not', () => {
    for (const seed of [1, 2, 3]) {
      it(`raises lung HU for covid19 (seed ${seed})`, () => {
        const covid = lungStats(synthesizeExam({ seed, label: 'covid19' }));
        const normal = lungStats(synthesizeExam({ seed, label: 'non_pneumonia' }));
        expect(covid.meanHu - normal.meanHu).toBeGreaterThan(5);
      });

      it(`adds consolidation for cap (seed ${seed})`, () => {
        const cap = lungStats(synthesizeExam({ seed, label: 'cap' }));
        const normal = lungStats(synthesizeExam({ seed, label: 'non_pneumonia' }));
        expect(cap.denseVoxels).toBeGreaterThan(1000);
        expect(cap.denseVoxels).toBeGreaterThan(5 * normal.denseVoxels);
      });
    }
  });

  it('varies slice count and spacing', () => {
    const exams = [1, 2, 3, 4, 5, 6].map((seed) => synthesizeExam({ seed, label: 'non_pneumonia', size: 32 }));
    for (const exam of exams) {
      expect(exam.slices).toBeGreaterThanOrEqual(12);
      expect(exam.slices).toBeLessThanOrEqual(24);
      expect(exam.sliceSpacing).toBeGreaterThanOrEqual(5);
      expect(exam.sliceSpacing).toBeLessThanOrEqual(10);
    }
    expect(new Set(exams.map((exam) => exam.slices)).size).toBeGreaterThan(1);
  });

  describe('when reporting the lesion mask', () => {
    // Mean HU of lung voxels inside and outside the lesion mask.
    function meanHuByLesion(exam: SyntheticExam): { lesion: number; clear: number } {
      const sums = { lesion: 0, clear: 0 };
      const counts = { lesion: 0, clear: 0 };
      for (let i = 0; i < exam.hu.length; i++) {
        if (exam.lungMask[i] === 0) continue;
        const part = exam.lesionMask[i] === 1 ? 'lesion' : 'clear';
        sums[part] += exam.hu[i];
        counts[part]++;
      }
      return { lesion: sums.lesion / counts.lesion, clear: sums.clear / counts.clear };
    }

    for (const label of ['covid19', 'cap'] as const) {
      it(`marks lung voxels only and counts them (${label})`, () => {
        const exam = synthesizeExam({ seed: 4, label, size: 64 });
        let marked = 0;
        let outsideLung = 0;
        exam.lesionMask.forEach((value, i) => {
          marked += value;
          if (value === 1 && exam.lungMask[i] === 0) outsideLung++;
        });
        expect(exam.lesionMask).toHaveLength(exam.hu.length);
        expect(marked).toBe(exam.lesionVoxels);
        expect(marked).toBeGreaterThan(100);
        expect(outsideLung).toBe(0);
      });
    }

    it('marks the dense consolidation of cap', () => {
      // Consolidation is 0 to 50 HU at its core and fades into lung (about -850 HU) at its edge.
      const { lesion, clear } = meanHuByLesion(synthesizeExam({ seed: 4, label: 'cap', size: 64 }));
      expect(lesion).toBeGreaterThan(-400);
      expect(clear).toBeLessThan(-700);
    });

    it('marks the ground glass of covid19', () => {
      // Ground glass is -550 to -350 HU at its core, at least 300 HU above normal lung.
      const { lesion, clear } = meanHuByLesion(synthesizeExam({ seed: 4, label: 'covid19', size: 64 }));
      expect(lesion - clear).toBeGreaterThan(150);
    });

    it('is empty for non_pneumonia', () => {
      const exam = synthesizeExam({ seed: 4, label: 'non_pneumonia', size: 64 });
      expect(exam.lesionMask.every((value) => value === 0)).toBe(true);
      expect(exam.lesionVoxels).toBe(0);
    });
  });

  describe('when computing the lung mask', () => {
    it('finds two lungs that match the phantom', () => {
      const exam = synthesizeExam({ seed: 11, label: 'covid19' });
      const { mask, lungs } = computeLungMask(volumeOf(exam));
      expect(lungs).toBe(2);

      let overlap = 0;
      let maskVoxels = 0;
      let truthVoxels = 0;
      for (let i = 0; i < mask.length; i++) {
        maskVoxels += mask[i];
        truthVoxels += exam.lungMask[i];
        if (mask[i] === 1 && exam.lungMask[i] === 1) overlap++;
      }
      const dice = (2 * overlap) / (maskVoxels + truthVoxels);
      expect(dice).toBeGreaterThan(0.9);
    });
  });
});
