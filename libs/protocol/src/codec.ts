import { createHash } from 'node:crypto';
import { z } from 'zod';
import { float16Table, toFloat16Bits } from './float16';
import { ProtocolError } from './errors';

/**
 * One named tensor of a model. Weights are always matched by name and shape,
 * never by position.
 */
export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export type WireDtype = 'float32' | 'float16';

const MAGIC = 0x574e5643; // "CVNW" read as a little-endian uint32
const FORMAT_VERSION = 1;
const PREAMBLE_BYTES = 12;
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_TENSORS = 10_000;
const DATA_ALIGNMENT = 8;

const manifestSchema = z
  .object({
    dtype: z.enum(['float32', 'float16']),
    tensors: z
      .array(
        z
          .object({
            name: z.string().min(1).max(256),
            shape: z.array(z.number().int().nonnegative()).max(8),
          })
          .strict(),
      )
      .max(MAX_TENSORS),
    meta: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(),
  })
  .strict();
export type WeightManifest = z.infer<typeof manifestSchema>;

export interface DecodedWeights {
  dtype: WireDtype;
  tensors: NamedTensor[];
  /** Byte offset in the payload of each tensor's values, in the order of `tensors`. */
  dataOffsets: number[];
  meta: Record<string, string | number | boolean | null>;
}

function elementCount(shape: number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

/**
 * Encodes named tensors into the weight format: a 12-byte preamble (magic,
 * format version, manifest length), a JSON manifest of names and shapes, zero
 * padding to 8 bytes, then every tensor's values in manifest order, little endian.
 * @param dtype wire precision; `float16` halves the bytes and rounds each value to nearest even.
 * @throws Error when a tensor's data length disagrees with its shape or a name repeats.
 */
export function encodeWeights(
  tensors: NamedTensor[],
  dtype: WireDtype = 'float32',
  meta: Record<string, string | number | boolean | null> = {},
): Buffer {
  const names = new Set<string>();
  for (const tensor of tensors) {
    if (names.has(tensor.name)) throw new Error(`tensor name ${tensor.name} appears twice`);
    names.add(tensor.name);
    const expected = elementCount(tensor.shape);
    if (tensor.data.length !== expected) {
      throw new Error(
        `tensor ${tensor.name} has ${tensor.data.length} values, shape [${tensor.shape}] needs ${expected}`,
      );
    }
  }
  const manifest: WeightManifest = {
    dtype,
    tensors: tensors.map((t) => ({ name: t.name, shape: [...t.shape] })),
    meta,
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest), 'utf8');
  const dataOffset = alignUp(PREAMBLE_BYTES + manifestBytes.length);
  const bytesPerValue = dtype === 'float32' ? 4 : 2;
  const valueCount = tensors.reduce((sum, t) => sum + t.data.length, 0);
  const out = Buffer.alloc(dataOffset + valueCount * bytesPerValue);

  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt32LE(FORMAT_VERSION, 4);
  out.writeUInt32LE(manifestBytes.length, 8);
  manifestBytes.copy(out, PREAMBLE_BYTES);

  let offset = dataOffset;
  for (const tensor of tensors) {
    if (dtype === 'float32') {
      const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
      out.set(bytes, offset);
      offset += bytes.byteLength;
    } else {
      for (let i = 0; i < tensor.data.length; i++) {
        out.writeUInt16LE(toFloat16Bits(tensor.data[i]), offset);
        offset += 2;
      }
    }
  }
  return out;
}

function alignUp(n: number): number {
  return Math.ceil(n / DATA_ALIGNMENT) * DATA_ALIGNMENT;
}

/**
 * Decodes the weight format written by `encodeWeights`. Values are copied into
 * fresh float32 arrays, so the result does not alias the input buffer.
 * @throws ProtocolError `weights_mismatch` naming what is malformed: magic,
 * version, manifest, or a data length that disagrees with the shapes.
 */
export function decodeWeights(payload: Uint8Array): DecodedWeights {
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const fail = (reason: string): never => {
    throw new ProtocolError('weights_mismatch', `weight payload is malformed: ${reason}`);
  };
  if (buf.length < PREAMBLE_BYTES) fail(`${buf.length} bytes, shorter than the ${PREAMBLE_BYTES}-byte preamble`);
  if (buf.readUInt32LE(0) !== MAGIC) fail('magic bytes are not CVNW');
  const version = buf.readUInt32LE(4);
  if (version !== FORMAT_VERSION) fail(`format version ${version}, expected ${FORMAT_VERSION}`);
  const manifestLength = buf.readUInt32LE(8);
  if (manifestLength > MAX_MANIFEST_BYTES || PREAMBLE_BYTES + manifestLength > buf.length) {
    fail(`manifest length ${manifestLength} exceeds the payload of ${buf.length} bytes`);
  }

  let manifestJson: unknown;
  try {
    manifestJson = JSON.parse(buf.toString('utf8', PREAMBLE_BYTES, PREAMBLE_BYTES + manifestLength));
  } catch (error) {
    fail(`manifest is not JSON (${(error as Error).message})`);
  }
  const parsed = manifestSchema.safeParse(manifestJson);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    fail(`manifest field ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const manifest = parsed.data!;

  const bytesPerValue = manifest.dtype === 'float32' ? 4 : 2;
  const dataOffset = alignUp(PREAMBLE_BYTES + manifestLength);
  let valueCount = 0;
  const names = new Set<string>();
  for (const entry of manifest.tensors) {
    if (names.has(entry.name)) fail(`tensor name ${entry.name} appears twice`);
    names.add(entry.name);
    valueCount += elementCount(entry.shape);
  }
  const expectedBytes = dataOffset + valueCount * bytesPerValue;
  if (buf.length !== expectedBytes) {
    fail(`${buf.length} bytes, the manifest's shapes need ${expectedBytes}`);
  }

  const tensors: NamedTensor[] = [];
  const dataOffsets: number[] = [];
  let offset = dataOffset;
  for (const entry of manifest.tensors) {
    dataOffsets.push(offset);
    const n = elementCount(entry.shape);
    const data = new Float32Array(n);
    if (manifest.dtype === 'float32') {
      new Uint8Array(data.buffer).set(buf.subarray(offset, offset + n * 4));
    } else {
      const values = float16Table();
      for (let i = 0; i < n; i++) data[i] = values[buf.readUInt16LE(offset + 2 * i)];
    }
    offset += n * bytesPerValue;
    tensors.push({ name: entry.name, shape: entry.shape, data });
  }
  return { dtype: manifest.dtype, tensors, dataOffsets, meta: manifest.meta ?? {} };
}

/** Returns the lowercase hex SHA-256 digest of a payload. */
export function sha256Hex(payload: Uint8Array): string {
  return createHash('sha256').update(payload).digest('hex');
}
