// Builds small NIfTI-1 and NIfTI-2 single files byte by byte, at the offsets of nifti1.h and nifti2.h.

/** Header fields and voxel bytes of a file to build; omitted fields are 0 (no scaling, no qform, no sform). */
export interface NiftiSpec {
  version: 1 | 2;
  dims: number[];
  datatype: number;
  bitpix: number;
  /** Voxel bytes in the file's byte order, i fastest. */
  voxels: Uint8Array;
  pixdim: number[];
  sclSlope?: number;
  sclInter?: number;
  qformCode?: number;
  sformCode?: number;
  quatern?: [number, number, number];
  qoffset?: [number, number, number];
  srow?: number[][];
  littleEndian?: boolean;
  /** "n+1"/"n+2" by default; "ni1" marks a .hdr/.img pair. */
  magic?: string;
}

/** Encodes a NIfTI single file; the voxels start right after the header and a 4-byte extension flag. */
export function buildNifti(spec: NiftiSpec): Uint8Array {
  const little = spec.littleEndian ?? true;
  const headerSize = spec.version === 1 ? 348 : 540;
  const voxOffset = spec.version === 1 ? 352 : 544;
  const out = new Uint8Array(voxOffset + spec.voxels.length);
  const view = new DataView(out.buffer);
  const dim = [spec.dims.length, ...spec.dims, ...Array(7 - spec.dims.length).fill(1)];
  const pixdim = [...spec.pixdim, ...Array(8 - spec.pixdim.length).fill(0)];
  const quatern = spec.quatern ?? [0, 0, 0];
  const qoffset = spec.qoffset ?? [0, 0, 0];
  const srow = spec.srow ?? [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]];
  view.setInt32(0, headerSize, little);

  if (spec.version === 1) {
    dim.forEach((value, i) => view.setInt16(40 + 2 * i, value, little));
    view.setInt16(70, spec.datatype, little);
    view.setInt16(72, spec.bitpix, little);
    pixdim.forEach((value, i) => view.setFloat32(76 + 4 * i, value, little));
    view.setFloat32(108, voxOffset, little);
    view.setFloat32(112, spec.sclSlope ?? 0, little);
    view.setFloat32(116, spec.sclInter ?? 0, little);
    view.setInt16(252, spec.qformCode ?? 0, little);
    view.setInt16(254, spec.sformCode ?? 0, little);
    quatern.forEach((value, i) => view.setFloat32(256 + 4 * i, value, little));
    qoffset.forEach((value, i) => view.setFloat32(268 + 4 * i, value, little));
    srow.forEach((row, r) => row.forEach((value, c) => view.setFloat32(280 + 16 * r + 4 * c, value, little)));
    out.set(Buffer.from(`${spec.magic ?? 'n+1'}\0`, 'latin1'), 344);
  } else {
    out.set(Buffer.from(`${spec.magic ?? 'n+2'}\0\r\n\x1a\n`, 'latin1'), 4);
    view.setInt16(12, spec.datatype, little);
    view.setInt16(14, spec.bitpix, little);
    dim.forEach((value, i) => view.setBigInt64(16 + 8 * i, BigInt(value), little));
    pixdim.forEach((value, i) => view.setFloat64(104 + 8 * i, value, little));
    view.setBigInt64(168, BigInt(voxOffset), little);
    view.setFloat64(176, spec.sclSlope ?? 0, little);
    view.setFloat64(184, spec.sclInter ?? 0, little);
    view.setInt32(344, spec.qformCode ?? 0, little);
    view.setInt32(348, spec.sformCode ?? 0, little);
    quatern.forEach((value, i) => view.setFloat64(352 + 8 * i, value, little));
    qoffset.forEach((value, i) => view.setFloat64(376 + 8 * i, value, little));
    srow.forEach((row, r) => row.forEach((value, c) => view.setFloat64(400 + 32 * r + 8 * c, value, little)));
  }
  out.set(spec.voxels, voxOffset);
  return out;
}

/** Voxel values of the test volumes: a pattern that differs along every axis, i fastest. */
export function patternValues(dims: [number, number, number], offset = 0): number[] {
  const values: number[] = [];
  for (let k = 0; k < dims[2]; k++) for (let j = 0; j < dims[1]; j++) for (let i = 0; i < dims[0]; i++) values.push(offset + i + 10 * j + 100 * k);
  return values;
}

/** Encodes numbers as samples of a typed-array type, in the given byte order. */
export function encodeSamples(values: number[], kind: 'int16' | 'uint8' | 'float32', littleEndian = true): Uint8Array {
  const sizes = { uint8: 1, int16: 2, float32: 4 };
  const size = sizes[kind];
  const out = new Uint8Array(values.length * size);
  const view = new DataView(out.buffer);
  values.forEach((value, i) => {
    if (kind === 'uint8') view.setUint8(i, value);
    else if (kind === 'int16') view.setInt16(2 * i, value, littleEndian);
    else view.setFloat32(4 * i, value, littleEndian);
  });
  return out;
}
