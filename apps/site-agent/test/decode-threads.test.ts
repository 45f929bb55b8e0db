import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSyntheticArchive } from '@covnet/imaging';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SiteArchive, type InputSpec } from '../src/archive/site-archive';

const SPEC: InputSpec = { backbone: 'small', inputSize: 16, maxSlices: 4 };

function bytesOf(values: Float32Array): Buffer {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
}

describe('archive decoded on worker threads', () => {
  let work: string;
  let archive: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'covnet-threads-'));
    archive = join(work, 'archive');
    await writeSyntheticArchive(archive, { exams: 3, seed: 5, rows: 48, slices: 8 });
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('prepares the inputs of the main thread', async () => {
    const inThread = await (await SiteArchive.open(archive)).prepare(SPEC);
    const pooled = await (await SiteArchive.open(archive, { decodeThreads: 2 })).prepare(SPEC);
    const exams = [...inThread.train, ...inThread.val];
    const pooledExams = [...pooled.train, ...pooled.val];
    expect(pooledExams.map((exam) => exam.examId)).toEqual(exams.map((exam) => exam.examId));
    for (const [index, exam] of pooledExams.entries()) {
      expect(exam.input.slices).toBe(exams[index].input.slices);
      expect(bytesOf(exam.input.data).equals(bytesOf(exams[index].input.data))).toBe(true);
    }
  });
});
