import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSeriesVolume, preprocessVolume } from '@covnet/imaging';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadExamInput, type InputSpec } from '../src/archive/exam-input';
import { writeMultiSeriesExam, type MultiSeriesExam } from './helpers/multi-series-exam';

const SPEC: InputSpec = { backbone: 'small', inputSize: 32, maxSlices: 8 };

describe('loadExamInput', () => {
  let work: string;
  let exam: MultiSeriesExam;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'covnet-exam-input-'));
    exam = await writeMultiSeriesExam(work, 41);
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  describe('when a folder holds a scout and two reconstructions', () => {
    it('uses the lung-kernel series', async () => {
      const input = await loadExamInput(work, SPEC);
      const lung = preprocessVolume(await loadSeriesVolume(exam.lung), { size: SPEC.inputSize, maxSlices: SPEC.maxSlices });
      expect(input.slices).toBe(lung.slices);
      expect(input.data).toEqual(lung.data);
    });

    it('does not use the series with the most slices', async () => {
      const input = await loadExamInput(work, SPEC);
      const soft = preprocessVolume(await loadSeriesVolume(exam.softTissue), { size: SPEC.inputSize, maxSlices: SPEC.maxSlices });
      expect(input.data).not.toEqual(soft.data);
    });
  });
});
