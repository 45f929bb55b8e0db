import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSyntheticArchive } from '@covnet/imaging';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SiteArchive, type InputSpec } from '../src/archive/site-archive';

const SPEC: InputSpec = { backbone: 'small', inputSize: 16, maxSlices: 4 };

async function spoilExam(dir: string): Promise<void> {
  for (const name of await readdir(dir)) await writeFile(join(dir, name), 'not a DICOM file');
}

describe('archive with unreadable exams', () => {
  let work: string;
  let archive: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'covnet-skips-'));
    archive = join(work, 'archive');
    await writeSyntheticArchive(archive, { exams: 4, seed: 3, rows: 32, slices: 6, valFraction: 0.25 });
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('leaves out the exam and keeps the others', async () => {
    const opened = await SiteArchive.open(archive);
    const broken = opened.exams[1];
    await spoilExam(broken.dir);

    const prepared = await (await SiteArchive.open(archive)).prepare(SPEC);
    expect(prepared.train.length + prepared.val.length).toBe(3);
    expect([...prepared.train, ...prepared.val].map((exam) => exam.examId)).not.toContain(broken.examId);
    expect(prepared.skipped).toHaveLength(1);
    expect(prepared.skipped[0].examId).toBe(broken.examId);
    expect(prepared.skipped[0].reason).toContain(`exam folder ${broken.dir} has no usable axial CT series`);
  });

  it('fails when no exam can be read', async () => {
    const opened = await SiteArchive.open(archive);
    for (const exam of opened.exams) await spoilExam(exam.dir);
    await expect(opened.prepare(SPEC)).rejects.toThrow(`no exam of archive ${archive} can be read`);
  });
});
