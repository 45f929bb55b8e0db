import { readFile } from 'node:fs/promises';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import type { Volume } from '../series/volume';

const gunzipAsync = promisify(gunzip);

/** A NIfTI file that cannot be read as a CT volume, naming the file and the reason. */
export class NiftiReadError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: ${reason}`);
    this.name = 'NiftiReadError';
  }
}

/** Header fields of a NIfTI-1 or NIfTI-2 file that reading a volume needs. */
export interface NiftiHeader {
  version: 1 | 2;
  littleEndian: boolean;
  /** dim[1..3]: voxels along i, j, k. */
  dims: [number, number, number];
  datatype: number;
  voxOffset: number;
  sclSlope: number;
  sclInter: number;
  /** Voxel (i, j, k) to world (RAS+, mm) as the rows of a 3x4 matrix. */
  affine: number[][];
  /** Source of the affine: the sform, the qform or pixdim alone. */
  affineSource: 'sform' | 'qform' | 'pixdim';
}

type SampleArray = Uint8Array | Int8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | Float32Array | Float64Array;

interface Datatype {
  bytes: number;
  view: (buffer: ArrayBuffer, byteOffset: number, length: number) => SampleArray;
}

// NIfTI datatype codes (nifti1.h) of the scalar types a CT volume can be stored in.
const DATATYPES: Record<number, Datatype> = {
  2: { bytes: 1, view: (buffer, offset, length) => new Uint8Array(buffer, offset, length) },
  4: { bytes: 2, view: (buffer, offset, length) => new Int16Array(buffer, offset, length) },
  8: { bytes: 4, view: (buffer, offset, length) => new Int32Array(buffer, offset, length) },
  16: { bytes: 4, view: (buffer, offset, length) => new Float32Array(buffer, offset, length) },
  64: { bytes: 8, view: (buffer, offset, length) => new Float64Array(buffer, offset, length) },
  256: { bytes: 1, view: (buffer, offset, length) => new Int8Array(buffer, offset, length) },
  512: { bytes: 2, view: (buffer, offset, length) => new Uint16Array(buffer, offset, length) },
  768: { bytes: 4, view: (buffer, offset, length) => new Uint32Array(buffer, offset, length) },
};

const GZIP_MAGIC = [0x1f, 0x8b];
/** Largest inflated .nii.gz accepted, so that a small corrupt file cannot exhaust memory. */
const MAX_INFLATED_BYTES = 4 * 1024 ** 3 - 1;

/**
 * Reads a NIfTI-1 or NIfTI-2 file (.nii, or .nii.gz inflated with node:zlib) as a CT volume in
 * HU. Values are multiplied by scl_slope and added to scl_inter. A scl_slope of 0 means no
 * scaling, as the NIfTI-1 standard defines it. Voxel axes are permuted and flipped so that the result reads
 * like an axial DICOM series: columns run to the patient's left, rows to the posterior, and
 * slices from feet to head. The affine comes from the sform when sform_code > 0, else from the
 * qform when qform_code > 0, else from pixdim alone (the order nibabel's get_best_affine uses).
 * @throws NiftiReadError for a file that is not NIfTI-1 or NIfTI-2 (a .hdr/.img pair included),
 *   more than one volume (dim[4] > 1), an unsupported datatype or truncated voxel data.
 */
export async function readNiftiVolume(path: string): Promise<Volume> {
  let bytes: Uint8Array = await readFile(path);
  if (bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1]) {
    try {
      bytes = await gunzipAsync(bytes, { maxOutputLength: MAX_INFLATED_BYTES });
    } catch (error) {
      throw new NiftiReadError(path, `gzip data cannot be inflated: ${(error as Error).message}`);
    }
  }
  return parseNiftiVolume(bytes, path);
}

/** Parses the bytes of an uncompressed .nii file; see readNiftiVolume. */
export function parseNiftiVolume(bytes: Uint8Array, path: string): Volume {
  const header = parseNiftiHeader(bytes, path);
  const type = DATATYPES[header.datatype];
  if (type === undefined) throw new NiftiReadError(path, `datatype ${header.datatype} is not supported, expected one of ${Object.keys(DATATYPES).join(', ')}`);

  const [ni, nj, nk] = header.dims;
  const count = ni * nj * nk;
  const needed = header.voxOffset + count * type.bytes;
  if (bytes.byteLength < needed) throw new NiftiReadError(path, `file has ${bytes.byteLength} bytes, expected at least ${needed} for ${ni}x${nj}x${nk} voxels of datatype ${header.datatype}`);

  const scaled = header.sclSlope !== 0 && Number.isFinite(header.sclSlope);
  const slope = scaled ? header.sclSlope : 1;
  const intercept = scaled && Number.isFinite(header.sclInter) ? header.sclInter : 0;
  const samples = sampleView(bytes.subarray(header.voxOffset, needed), type, count, header.littleEndian);
  const values = new Float32Array(count);
  for (let index = 0; index < count; index++) values[index] = samples[index] * slope + intercept;

  return reorientToAxial(values, header);
}

// Views the voxel bytes as a typed array, copying them only when they are misaligned or big endian.
// NOTE: typed arrays use the host's byte order, so this assumes a little-endian host.
function sampleView(voxels: Uint8Array, type: Datatype, count: number, littleEndian: boolean): SampleArray {
  let bytes = voxels;
  if (!littleEndian || bytes.byteOffset % type.bytes !== 0) bytes = voxels.slice();
  if (!littleEndian && type.bytes > 1) {
    for (let start = 0; start < bytes.length; start += type.bytes) bytes.subarray(start, start + type.bytes).reverse();
  }
  return type.view(bytes.buffer as ArrayBuffer, bytes.byteOffset, count);
}

/**
 * Reads the header of a NIfTI-1 (348-byte) or NIfTI-2 (540-byte) single file, in either byte order.
 * @throws NiftiReadError when the header is neither, or describes no 3-D volume.
 */
export function parseNiftiHeader(bytes: Uint8Array, path: string): NiftiHeader {
  if (bytes.byteLength < 348) throw new NiftiReadError(path, `file has ${bytes.byteLength} bytes, fewer than a NIfTI header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const sizeLittle = view.getInt32(0, true);
  const sizeBig = view.getInt32(0, false);
  const sizeofHdr = sizeLittle === 348 || sizeLittle === 540 ? sizeLittle : sizeBig;
  const littleEndian = sizeLittle === sizeofHdr;
  if (sizeofHdr !== 348 && sizeofHdr !== 540) throw new NiftiReadError(path, `sizeof_hdr is ${sizeLittle}, expected 348 (NIfTI-1) or 540 (NIfTI-2)`);
  const header = sizeofHdr === 348 ? readNifti1(view, littleEndian, path) : readNifti2(view, littleEndian, path);

  if (header.dimCount < 3) throw new NiftiReadError(path, `dim[0] is ${header.dimCount}, expected a 3-D volume`);
  const extra = header.dim.slice(4, header.dimCount + 1).filter((size) => size > 1);
  if (extra.length > 0) throw new NiftiReadError(path, `dims ${header.dim.slice(1, header.dimCount + 1).join('x')} hold several volumes, expected one 3-D volume`);
  const dims: [number, number, number] = [header.dim[1], header.dim[2], header.dim[3]];
  if (dims.some((size) => !Number.isInteger(size) || size < 1)) throw new NiftiReadError(path, `dims ${dims.join('x')} are invalid`);

  const { affine, affineSource } = chooseAffine(header);
  return { version: header.version, littleEndian, dims, datatype: header.datatype, voxOffset: header.voxOffset, sclSlope: header.sclSlope, sclInter: header.sclInter, affine, affineSource };
}

interface RawHeader {
  version: 1 | 2;
  dimCount: number;
  dim: number[];
  datatype: number;
  pixdim: number[];
  voxOffset: number;
  sclSlope: number;
  sclInter: number;
  qformCode: number;
  sformCode: number;
  quatern: [number, number, number];
  qoffset: [number, number, number];
  srow: number[][];
}

// Offsets from nifti1.h.
function readNifti1(view: DataView, little: boolean, path: string): RawHeader {
  const magic = String.fromCharCode(view.getUint8(344), view.getUint8(345), view.getUint8(346));
  if (magic === 'ni1') throw new NiftiReadError(path, 'a .hdr/.img pair is not supported; convert it to a single .nii file');
  if (magic !== 'n+1') throw new NiftiReadError(path, `magic is "${magic}", expected "n+1"`);
  const dim = Array.from({ length: 8 }, (_, i) => view.getInt16(40 + 2 * i, little));
  const float = (offset: number) => view.getFloat32(offset, little);
  return {
    version: 1,
    dimCount: dim[0],
    dim,
    datatype: view.getInt16(70, little),
    pixdim: Array.from({ length: 8 }, (_, i) => float(76 + 4 * i)),
    voxOffset: Math.floor(float(108)),
    sclSlope: float(112),
    sclInter: float(116),
    qformCode: view.getInt16(252, little),
    sformCode: view.getInt16(254, little),
    quatern: [float(256), float(260), float(264)],
    qoffset: [float(268), float(272), float(276)],
    srow: [0, 1, 2].map((row) => [0, 1, 2, 3].map((col) => float(280 + 16 * row + 4 * col))),
  };
}

// Offsets from nifti2.h.
function readNifti2(view: DataView, little: boolean, path: string): RawHeader {
  if (view.byteLength < 540) throw new NiftiReadError(path, `file has ${view.byteLength} bytes, fewer than a NIfTI-2 header`);
  const magic = String.fromCharCode(view.getUint8(4), view.getUint8(5), view.getUint8(6));
  if (magic === 'ni2') throw new NiftiReadError(path, 'a .hdr/.img pair is not supported; convert it to a single .nii file');
  if (magic !== 'n+2') throw new NiftiReadError(path, `magic is "${magic}", expected "n+2"`);
  const int64 = (offset: number) => Number(view.getBigInt64(offset, little));
  const double = (offset: number) => view.getFloat64(offset, little);
  const dim = Array.from({ length: 8 }, (_, i) => int64(16 + 8 * i));
  return {
    version: 2,
    dimCount: dim[0],
    dim,
    datatype: view.getInt16(12, little),
    pixdim: Array.from({ length: 8 }, (_, i) => double(104 + 8 * i)),
    voxOffset: int64(168),
    sclSlope: double(176),
    sclInter: double(184),
    qformCode: view.getInt32(344, little),
    sformCode: view.getInt32(348, little),
    quatern: [double(352), double(360), double(368)],
    qoffset: [double(376), double(384), double(392)],
    srow: [0, 1, 2].map((row) => [0, 1, 2, 3].map((col) => double(400 + 32 * row + 8 * col))),
  };
}

function chooseAffine(header: RawHeader): { affine: number[][]; affineSource: NiftiHeader['affineSource'] } {
  if (header.sformCode > 0) return { affine: header.srow, affineSource: 'sform' };
  const [, dx, dy, dz] = header.pixdim.map(Math.abs);
  if (header.qformCode > 0) {
    const [b, c, d] = header.quatern;
    // a is implied by the unit quaternion; rounding can make 1 - b^2 - c^2 - d^2 slightly negative.
    const a = Math.sqrt(Math.max(0, 1 - b * b - c * c - d * d));
    const qfac = header.pixdim[0] < 0 ? -1 : 1;
    const rotation = [
      [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
      [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
      [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ];
    const scale = [dx, dy, qfac * dz];
    const affine = rotation.map((row, r) => [...row.map((value, col) => value * scale[col]), header.qoffset[r]]);
    return { affine, affineSource: 'qform' };
  }
  return { affine: [[dx, 0, 0, 0], [0, dy, 0, 0], [0, 0, dz, 0]], affineSource: 'pixdim' };
}

// Maps voxel axes onto the axial DICOM layout. Output axis 0 (columns) runs to the patient's
// left (RAS -x), axis 1 (rows) to the posterior (RAS -y) and axis 2 (slices) to the head (RAS +z).
// Each output axis takes the voxel axis whose direction is closest to it.
// NOTE: an oblique affine is snapped to the nearest axes, without resampling.
function reorientToAxial(values: Float32Array, header: NiftiHeader): Volume {
  const { affine, dims } = header;
  const columnsOf = [0, 1, 2].map((axis) => [affine[0][axis], affine[1][axis], affine[2][axis]]);
  const spacing = columnsOf.map((vector) => Math.hypot(...vector));
  const wanted = [
    [-1, 0, 0],
    [0, -1, 0],
    [0, 0, 1],
  ];

  const source: number[] = [];
  const flip: boolean[] = [];
  const unused = new Set([0, 1, 2]);
  for (const direction of wanted) {
    let best = -1;
    let bestDot = 0;
    for (const axis of unused) {
      const dot = (columnsOf[axis][0] * direction[0] + columnsOf[axis][1] * direction[1] + columnsOf[axis][2] * direction[2]) / (spacing[axis] || 1);
      if (best === -1 || Math.abs(dot) > Math.abs(bestDot)) {
        best = axis;
        bestDot = dot;
      }
    }
    unused.delete(best);
    source.push(best);
    flip.push(bestDot < 0);
  }

  const [columns, rows, slices] = source.map((axis) => dims[axis]);
  const strides = [1, dims[0], dims[0] * dims[1]];
  const hu = new Float32Array(values.length);
  let out = 0;
  for (let k = 0; k < slices; k++) {
    const kk = flip[2] ? slices - 1 - k : k;
    for (let row = 0; row < rows; row++) {
      const rr = flip[1] ? rows - 1 - row : row;
      const base = kk * strides[source[2]] + rr * strides[source[1]];
      const columnStride = strides[source[0]];
      for (let col = 0; col < columns; col++) {
        const cc = flip[0] ? columns - 1 - col : col;
        hu[out++] = values[base + cc * columnStride];
      }
    }
  }
  return { hu, slices, rows, columns, pixelSpacing: [spacing[source[1]], spacing[source[0]]], sliceSpacing: spacing[source[2]] };
}
