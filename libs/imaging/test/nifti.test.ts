import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NiftiReadError, readNiftiVolume, type Volume } from '../src';
import { buildNifti, encodeSamples, patternValues, type NiftiSpec } from './helpers/nifti-builder';

// Expected values come from nibabel 5.0.0 with numpy 1.24, computed once on these same files and
// written here as literals. as_closest_canonical(img).get_fdata() gives a RAS+ array C of shape
// (nx, ny, nz), and the axial layout is value[k][row][col] = C[nx-1-col, ny-1-row, k].
// Pixel spacing is [zoom y, zoom x] and slice spacing zoom z of the canonical image.
interface Case {
  name: string;
  spec: NiftiSpec;
  shape: [number, number, number];
  pixelSpacing: [number, number];
  sliceSpacing: number;
  values: number[];
}

const CASES: Case[] = [
  {
    name: 'NIfTI-1 int16 with qform and scaling',
    spec: { version: 1, dims: [4, 3, 2], datatype: 4, bitpix: 16, voxels: encodeSamples(patternValues([4, 3, 2]), 'int16'), pixdim: [1, 0.7, 0.8, 2.5], sclSlope: 2, sclInter: -1024, qformCode: 1, qoffset: [-10, 20, -30] },
    shape: [2, 3, 4],
    pixelSpacing: [0.800000011920929, 0.699999988079071],
    sliceSpacing: 2.5,
    values: [-978, -980, -982, -984, -998, -1000, -1002, -1004, -1018, -1020, -1022, -1024, -778, -780, -782, -784, -798, -800, -802, -804, -818, -820, -822, -824],
  },
  {
    name: 'NIfTI-2 float32 with a permuting sform',
    spec: { version: 2, dims: [3, 4, 2], datatype: 16, bitpix: 32, voxels: encodeSamples(patternValues([3, 4, 2], -500), 'float32'), pixdim: [1, 0.6, 2, 3], sformCode: 1, srow: [[-0.6, 0, 0, 5], [0, 0, -3, 6], [0, 2, 0, 7]] },
    shape: [4, 2, 3],
    pixelSpacing: [3, 0.6],
    sliceSpacing: 2,
    values: [-500, -499, -498, -400, -399, -398, -490, -489, -488, -390, -389, -388, -480, -479, -478, -380, -379, -378, -470, -469, -468, -370, -369, -368],
  },
  {
    name: 'NIfTI-1 uint8 big endian, qfac -1, no scaling',
    spec: { version: 1, littleEndian: false, dims: [2, 3, 3], datatype: 2, bitpix: 8, voxels: encodeSamples(patternValues([2, 3, 3]), 'uint8'), pixdim: [-1, 1.5, 1.25, 4], qformCode: 2, quatern: [0, 0, 1] },
    shape: [3, 3, 2],
    pixelSpacing: [1.25, 1.5],
    sliceSpacing: 4,
    values: [200, 201, 210, 211, 220, 221, 100, 101, 110, 111, 120, 121, 0, 1, 10, 11, 20, 21],
  },
];

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'covnet-nifti-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function expectVolume(volume: Volume, expected: Case) {
  expect([volume.slices, volume.rows, volume.columns]).toEqual(expected.shape);
  expect(volume.pixelSpacing[0]).toBeCloseTo(expected.pixelSpacing[0], 6);
  expect(volume.pixelSpacing[1]).toBeCloseTo(expected.pixelSpacing[1], 6);
  expect(volume.sliceSpacing).toBeCloseTo(expected.sliceSpacing, 6);
  expect(Array.from(volume.hu)).toEqual(expected.values);
}

describe('readNiftiVolume', () => {
  for (const [index, expected] of CASES.entries()) {
    describe(`when reading ${expected.name}`, () => {
      it('matches nibabel in .nii', async () => {
        const path = join(dir, `case-${index}.nii`);
        await writeFile(path, buildNifti(expected.spec));
        expectVolume(await readNiftiVolume(path), expected);
      });

      it('matches nibabel in .nii.gz', async () => {
        const path = join(dir, `case-${index}.nii.gz`);
        await writeFile(path, gzipSync(buildNifti(expected.spec)));
        expectVolume(await readNiftiVolume(path), expected);
      });
    });
  }

  describe('when int16 voxels are big endian', () => {
    it('matches the little-endian file', async () => {
      const path = join(dir, 'big-endian.nii');
      const spec = { ...CASES[0].spec, littleEndian: false, voxels: encodeSamples(patternValues([4, 3, 2]), 'int16', false) };
      await writeFile(path, buildNifti(spec));
      expectVolume(await readNiftiVolume(path), CASES[0]);
    });
  });

  describe('when the file is not one 3-D volume', () => {
    const base = CASES[0].spec;

    it('rejects a 4-D series', async () => {
      const path = join(dir, 'four-d.nii');
      await writeFile(path, buildNifti({ ...base, dims: [4, 3, 1, 2] }));
      await expect(readNiftiVolume(path)).rejects.toThrow(`${path}: dims 4x3x1x2 hold several volumes, expected one 3-D volume`);
    });

    it('rejects a .hdr/.img header', async () => {
      const path = join(dir, 'pair.hdr');
      await writeFile(path, buildNifti({ ...base, magic: 'ni1' }));
      await expect(readNiftiVolume(path)).rejects.toThrow('a .hdr/.img pair is not supported');
    });

    it('rejects an unsupported datatype', async () => {
      const path = join(dir, 'complex.nii');
      await writeFile(path, buildNifti({ ...base, datatype: 32 }));
      await expect(readNiftiVolume(path)).rejects.toThrow(NiftiReadError);
    });

    it('rejects truncated voxel data', async () => {
      const path = join(dir, 'truncated.nii');
      await writeFile(path, buildNifti(base).subarray(0, 360));
      await expect(readNiftiVolume(path)).rejects.toThrow(`${path}: file has 360 bytes, expected at least 400 for 4x3x2 voxels of datatype 4`);
    });

    it('rejects a file that is not NIfTI', async () => {
      const path = join(dir, 'text.nii');
      await writeFile(path, Buffer.alloc(400, 65));
      await expect(readNiftiVolume(path)).rejects.toThrow('expected 348 (NIfTI-1) or 540 (NIfTI-2)');
    });
  });
});
