import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { preprocessVolume, readNiftiVolume, synthesizeExam } from '@covnet/imaging';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifyExamFolder, loadExamInput, type InputSpec } from '../src/archive/exam-input';

const SPEC: InputSpec = { backbone: 'small', inputSize: 16, maxSlices: 3 };

// A NIfTI-1 single file of int16 voxels (datatype 4) with pixdim spacing and no qform or sform,
// at the offsets of nifti1.h.
function niftiInt16(values: Float32Array, dims: [number, number, number], spacing: [number, number, number]): Uint8Array {
  const out = new Uint8Array(352 + values.length * 2);
  const view = new DataView(out.buffer);
  view.setInt32(0, 348, true);
  [3, ...dims, 1, 1, 1, 1].forEach((value, i) => view.setInt16(40 + 2 * i, value, true));
  view.setInt16(70, 4, true);
  view.setInt16(72, 16, true);
  [1, ...spacing].forEach((value, i) => view.setFloat32(76 + 4 * i, value, true));
  view.setFloat32(108, 352, true);
  out.set(Buffer.from('n+1\0', 'latin1'), 344);
  values.forEach((value, i) => view.setInt16(352 + 2 * i, value, true));
  return out;
}

function grayPng(value: number, width: number, height: number): Buffer {
  const png = new PNG({ width, height });
  for (let i = 0; i < width * height; i++) png.data.set([value, value, value, 255], i * 4);
  return PNG.sync.write(png);
}

describe('loadExamInput formats', () => {
  let work: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'covnet-exam-formats-'));
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  describe('when the folder holds one NIfTI file', () => {
    const exam = synthesizeExam({ seed: 7, label: 'cap', slices: 6, size: 40, sliceSpacing: 5 });
    const bytes = niftiInt16(exam.hu, [exam.columns, exam.rows, exam.slices], [exam.pixelSpacing[1], exam.pixelSpacing[0], exam.sliceSpacing]);

    for (const name of ['volume.nii', 'volume.nii.gz']) {
      it(`reads ${name} as a volume`, async () => {
        const dir = join(work, name.replace(/\./g, '-'));
        await mkdir(dir);
        const path = join(dir, name);
        await writeFile(path, name.endsWith('.gz') ? gzipSync(bytes) : bytes);

        expect((await classifyExamFolder(dir)).format).toBe('nifti');
        const input = await loadExamInput(dir, SPEC);
        const expected = preprocessVolume(await readNiftiVolume(path), { size: SPEC.inputSize, maxSlices: SPEC.maxSlices });
        expect(input.slices).toBe(3);
        expect(input.cropSource).toBe('lungs');
        expect(input.data).toEqual(expected.data);
      });
    }
  });

  describe('when a NIfTI file has a JSON sidecar', () => {
    it('classifies the folder as NIfTI', async () => {
      const dir = join(work, 'nifti-sidecar');
      await mkdir(dir);
      await writeFile(join(dir, 'ct.nii'), niftiInt16(new Float32Array(8), [2, 2, 2], [1, 1, 1]));
      await writeFile(join(dir, 'ct.json'), '{"Modality": "CT"}');
      expect(await classifyExamFolder(dir)).toEqual({ format: 'nifti', files: [join(dir, 'ct.nii')] });
    });
  });

  describe('when the folder holds several PNG files', () => {
    let dir: string;

    beforeAll(async () => {
      dir = join(work, 'png-collection');
      await mkdir(dir);
      // Gray levels by file: natural order is 1, 2, 3, 10, so maxSlices 3 keeps 1, 3 (index 2 of 0..3, rounded) and 10.
      const files: [string, number][] = [['slice-10.png', 200], ['slice-2.png', 100], ['slice-1.png', 51], ['slice-3.png', 150]];
      for (const [name, value] of files) await writeFile(join(dir, name), grayPng(value, 20, 10));
    });

    it('classifies the folder as images', async () => {
      expect(await classifyExamFolder(dir)).toEqual({ format: 'images', files: ['slice-1.png', 'slice-2.png', 'slice-3.png', 'slice-10.png'].map((name) => join(dir, name)) });
    });

    it('orders slices by natural file name', async () => {
      const input = await loadExamInput(dir, SPEC);
      expect(input.slices).toBe(3);
      expect(input.sliceIndices).toEqual([0, 2, 3]);
      const size = SPEC.inputSize * SPEC.inputSize;
      // A uniform gray g maps to g / 255 everywhere: 51 / 255 = 0.2, 150 / 255 = 0.588..., 200 / 255 = 0.784...
      expect(input.data[0]).toBeCloseTo(0.2, 6);
      expect(input.data[size + 5]).toBeCloseTo(150 / 255, 6);
      expect(input.data[2 * size + 7]).toBeCloseTo(200 / 255, 6);
    });
  });

  describe('when the folder holds one PNG file', () => {
    it('makes a one-slice exam', async () => {
      const dir = join(work, 'png-single');
      await mkdir(dir);
      await writeFile(join(dir, 'slice.png'), grayPng(102, 8, 8));
      const input = await loadExamInput(dir, SPEC);
      expect(input.slices).toBe(1);
      expect(input.data[0]).toBeCloseTo(0.4, 6);
    });
  });

  describe('when the image is a symbolic link', () => {
    it('reads the linked PNG as a one-slice exam', async () => {
      const target = join(work, 'linked-target.png');
      await writeFile(target, grayPng(51, 8, 8));
      const dir = join(work, 'png-link');
      await mkdir(dir);
      await symlink(target, join(dir, 'slice.png'));
      expect((await classifyExamFolder(dir)).format).toBe('images');
      const input = await loadExamInput(dir, SPEC);
      expect(input.slices).toBe(1);
      // 51 of 255 grey levels is 0.2 after scaling to [0, 1].
      expect(input.data[0]).toBeCloseTo(0.2, 6);
    });

    it('treats a broken link as no file', async () => {
      const dir = join(work, 'png-broken-link');
      await mkdir(dir);
      await symlink(join(work, 'no-such-file.png'), join(dir, 'slice.png'));
      expect(await classifyExamFolder(dir)).toEqual({ format: 'dicom', files: [] });
    });
  });

  describe('when images sit beside other files', () => {
    it('reads the folder as DICOM', async () => {
      const dir = join(work, 'mixed');
      await mkdir(dir);
      await writeFile(join(dir, 'slice.png'), grayPng(10, 4, 4));
      await writeFile(join(dir, 'notes.txt'), 'not an image');
      expect((await classifyExamFolder(dir)).format).toBe('dicom');
      await expect(loadExamInput(dir, SPEC)).rejects.toThrow(`exam folder ${dir} has no usable axial CT series`);
    });
  });
});
