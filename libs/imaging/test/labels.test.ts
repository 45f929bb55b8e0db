import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LabelsFileError, readLabels } from '../src';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'covnet-labels-'));
  await mkdir(join(dir, 'a'));
  await mkdir(join(dir, 'b'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function problemsFor(csv: string): Promise<string[]> {
  await writeFile(join(dir, 'labels.csv'), csv);
  const error = await readLabels(dir).catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(LabelsFileError);
  return (error as LabelsFileError).problems;
}

describe('readLabels', () => {
  it('reads valid lines', async () => {
    await writeFile(join(dir, 'labels.csv'), 'exam,label,split\na,covid19,train\n\nb,cap,val\n');
    expect(await readLabels(dir)).toEqual([
      { exam: 'a', label: 'covid19', split: 'train', dir: join(dir, 'a') },
      { exam: 'b', label: 'cap', split: 'val', dir: join(dir, 'b') },
    ]);
  });

  describe('when lines are invalid', () => {
    it('names the line of an unknown class', async () => {
      expect(await problemsFor('exam,label,split\na,flu,train\n')).toEqual(['line 2: unknown class "flu" for exam a, expected covid19, cap or non_pneumonia']);
    });

    it('names the line of a missing split', async () => {
      expect(await problemsFor('exam,label,split\na,cap,train\nb,cap\n')).toEqual(['line 3: split is missing for exam b, expected train, val or test']);
    });

    it('names the line of a duplicate exam', async () => {
      expect(await problemsFor('exam,label,split\na,cap,train\na,cap,val\n')).toEqual(['line 3: exam a is already listed on line 2']);
    });

    it('names the line of a missing folder', async () => {
      expect(await problemsFor('exam,label,split\nzzz,non_pneumonia,test\n')).toEqual([`line 2: exam folder ${join(dir, 'zzz')} not found`]);
    });

    it('lists every invalid line', async () => {
      expect(await problemsFor('exam,label,split\na,flu,train\nb,cap,holdout\n')).toHaveLength(2);
    });

    it('rejects a wrong header', async () => {
      expect(await problemsFor('id,label,split\na,cap,train\n')).toEqual(['line 1: header is "id,label,split", expected "exam,label,split"']);
    });
  });
});

describe('readLabels without labels.csv', () => {
  it('names the archive and the header to write', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'covnet-nolabels-'));
    try {
      await expect(readLabels(dir)).rejects.toThrow(`archive ${dir} has no labels.csv; write one with the header "exam,label,split"`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
