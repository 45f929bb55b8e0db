import { describe, expect, it } from 'vitest';
import {
  ChunkAssembler,
  ProtocolError,
  decodeWeights,
  describePayload,
  encodeWeights,
  float16Table,
  fromFloat16Bits,
  sha256Hex,
  sliceChunk,
  toFloat16Bits,
  type NamedTensor,
} from '../src';

const tensors: NamedTensor[] = [
  { name: 'stem_conv/kernel', shape: [1, 1, 2, 3], data: Float32Array.from([0.1, -2.5, 3e-8, 1e30, -0, 7]) },
  { name: 'stem_bn/moving_mean', shape: [3], data: Float32Array.from([0.25, 0.5, 0.75]) },
  { name: 'empty', shape: [0], data: new Float32Array(0) },
];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return error instanceof ProtocolError ? error.code : `not a ProtocolError: ${String(error)}`;
  }
  return undefined;
}

describe('weight codec', () => {
  describe('when encoding float32', () => {
    it('round-trips names, shapes and bits exactly', () => {
      const decoded = decodeWeights(encodeWeights(tensors));
      expect(decoded.dtype).toBe('float32');
      expect(decoded.tensors.map((t) => t.name)).toEqual(tensors.map((t) => t.name));
      decoded.tensors.forEach((t, i) => {
        expect(t.shape).toEqual(tensors[i].shape);
        expect(Buffer.from(t.data.buffer)).toEqual(Buffer.from(tensors[i].data.buffer));
      });
    });

    it('stores 4 bytes per value after an 8-byte aligned manifest', () => {
      const payload = encodeWeights(tensors);
      const manifestLength = payload.readUInt32LE(8);
      const dataOffset = Math.ceil((12 + manifestLength) / 8) * 8;
      expect(payload.length).toBe(dataOffset + 9 * 4);
      // 0.25 is the first moving-mean value: float32 bits 0x3e800000.
      expect(payload.readUInt32LE(dataOffset + 6 * 4)).toBe(0x3e800000);
    });
  });

  describe('when encoding float16', () => {
    it('halves the data bytes and rounds to nearest', () => {
      const f32 = encodeWeights(tensors, 'float32');
      const f16 = encodeWeights(tensors, 'float16');
      expect(f32.length - f16.length).toBeGreaterThanOrEqual(9 * 2 - 8);
      const decoded = decodeWeights(f16);
      expect(Array.from(decoded.tensors[1].data)).toEqual([0.25, 0.5, 0.75]);
      // 0.1 in half precision is 0x2e66 = 0.0999755859375.
      expect(decoded.tensors[0].data[0]).toBe(0.0999755859375);
      expect(decoded.tensors[0].data[3]).toBe(Infinity);
    });

    it('converts reference half-precision values', () => {
      // Values from the IEEE 754 binary16 table: 1, max normal, min subnormal, 1/3, -2.
      expect(toFloat16Bits(1)).toBe(0x3c00);
      expect(toFloat16Bits(65504)).toBe(0x7bff);
      expect(toFloat16Bits(65520)).toBe(0x7c00);
      expect(toFloat16Bits(2 ** -24)).toBe(0x0001);
      expect(toFloat16Bits(1 / 3)).toBe(0x3555);
      expect(toFloat16Bits(-2)).toBe(0xc000);
      expect(Number.isNaN(fromFloat16Bits(toFloat16Bits(NaN)))).toBe(true);
      expect(fromFloat16Bits(0x3555)).toBe(0.333251953125);
    });
  });

  describe('when the payload is malformed', () => {
    it('rejects wrong magic bytes', () => {
      const payload = encodeWeights(tensors);
      payload[0] ^= 0xff;
      expect(codeOf(() => decodeWeights(payload))).toBe('weights_mismatch');
    });

    it('rejects a truncated payload naming the byte counts', () => {
      const payload = encodeWeights(tensors);
      expect(() => decodeWeights(payload.subarray(0, payload.length - 4))).toThrow(/bytes, the manifest's shapes need/);
    });

    it('rejects a manifest length beyond the payload', () => {
      const payload = encodeWeights(tensors);
      payload.writeUInt32LE(0xffffffff, 8);
      expect(codeOf(() => decodeWeights(payload))).toBe('weights_mismatch');
    });

    it('rejects a tensor whose data disagrees with its shape', () => {
      expect(() => encodeWeights([{ name: 'x', shape: [2, 2], data: new Float32Array(3) }])).toThrow(/3 values/);
    });
  });
});

describe('chunked transfer', () => {
  const payload = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));

  it('reassembles chunks and checks the SHA-256', () => {
    const ref = describePayload(payload, 300);
    expect(ref.chunkCount).toBe(4);
    const assembler = new ChunkAssembler(ref, 10_000);
    for (let i = 0; i < ref.chunkCount; i++) assembler.add(i, sliceChunk(payload, ref, i));
    expect(assembler.finish().equals(payload)).toBe(true);
  });

  it('ignores a resent chunk and resumes from the next index', () => {
    const ref = describePayload(payload, 300);
    const assembler = new ChunkAssembler(ref, 10_000);
    assembler.add(0, sliceChunk(payload, ref, 0));
    assembler.add(1, sliceChunk(payload, ref, 1));
    expect(assembler.add(1, sliceChunk(payload, ref, 1))).toBe(2);
    expect(codeOf(() => assembler.add(3, sliceChunk(payload, ref, 3)))).toBe('chunk_out_of_order');
  });

  it('rejects a payload whose SHA-256 differs', () => {
    const ref = { ...describePayload(payload, 500), sha256: sha256Hex(Buffer.from('other')) };
    const assembler = new ChunkAssembler(ref, 10_000);
    assembler.add(0, sliceChunk(payload, ref, 0));
    assembler.add(1, sliceChunk(payload, ref, 1));
    expect(codeOf(() => assembler.finish())).toBe('checksum_mismatch');
  });

  it('rejects a payload above the size limit', () => {
    expect(codeOf(() => new ChunkAssembler(describePayload(payload, 300), 999))).toBe('payload_too_large');
  });

  it('computes the SHA-256 of a known string', () => {
    // sha256("abc") from FIPS 180-2, appendix B.1.
    expect(sha256Hex(Buffer.from('abc'))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe('float16Table', () => {
  it('matches fromFloat16Bits for every bit pattern', () => {
    const table = float16Table();
    expect(table).toHaveLength(65_536);
    let mismatches = 0;
    for (let bits = 0; bits < 65_536; bits++) {
      if (!Object.is(table[bits], Math.fround(fromFloat16Bits(bits)))) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  it('holds the IEEE values of known patterns', () => {
    const table = float16Table();
    // Values from the IEEE 754 binary16 definition.
    expect(table[0x3c00]).toBe(1);
    expect(table[0xc000]).toBe(-2);
    expect(table[0x7bff]).toBe(65504);
    expect(table[0x0001]).toBe(2 ** -24);
    expect(Object.is(table[0x8000], -0)).toBe(true);
    expect(table[0x7c00]).toBe(Infinity);
    expect(table[0x7e00]).toBeNaN();
  });
});
