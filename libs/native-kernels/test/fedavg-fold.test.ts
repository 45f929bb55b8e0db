import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadNativeKernels, type NativeFoldSource } from '../src/index';

const kernels = loadNativeKernels().kernels;

describe.runIf(kernels !== null)('fedAvgFold', () => {
  const fold = kernels!.fedAvgFold.bind(kernels);
  const directory = mkdtempSync(path.join(tmpdir(), 'native-fedavg-fold-'));
  afterAll(() => rmSync(directory, { recursive: true, force: true }));
  const starts = Float64Array.of(0, 3, 5);

  describe('when reading a file', () => {
    // Tensor 0 is 3 float32 values at byte 8, tensor 1 is 2 float32 values at byte 20.
    const file = path.join(directory, 'update.bin');
    const bytes = Buffer.alloc(28);
    [1.5, -2, 0.25].forEach((v, i) => bytes.writeFloatLE(v, 8 + 4 * i));
    [3, -0].forEach((v, i) => bytes.writeFloatLE(v, 20 + 4 * i));
    writeFileSync(file, bytes);

    it('adds weight times value to the sum', () => {
      const descriptor = openSync(file, 'r');
      try {
        const sum = Float64Array.of(1, 1, 1, 1, 1);
        const source: NativeFoldSource = { weight: 0.5, descriptor, path: file, bytesPerValue: 4, byteOffsets: Float64Array.of(8, 20) };
        fold(sum, starts, [source], false, 1, null, 2);
        expect(Array.from(sum)).toEqual([1.75, 0, 1.125, 2.5, 1]);
      } finally {
        closeSync(descriptor);
      }
    });

    it('names the file and byte when it ends early', () => {
      const descriptor = openSync(file, 'r');
      try {
        const source: NativeFoldSource = { weight: 1, descriptor, path: file, bytesPerValue: 4, byteOffsets: Float64Array.of(8, 24) };
        expect(() => fold(new Float64Array(5), starts, [source], true, 1, null, 1)).toThrow(
          `stored update ${file} is truncated: it ends before byte 28, where values of the global model are expected`,
        );
      } finally {
        closeSync(descriptor);
      }
    });

    it('names the file when the descriptor is not readable', () => {
      const descriptor = openSync(path.join(directory, 'write-only.bin'), 'w');
      try {
        const source: NativeFoldSource = { weight: 1, descriptor, path: 'write-only.bin', bytesPerValue: 2, byteOffsets: Float64Array.of(0, 6) };
        expect(() => fold(new Float64Array(5), starts, [source], true, 1, null, 1)).toThrow(/^stored update write-only.bin could not be read at byte 0: Bad file descriptor$/);
      } finally {
        closeSync(descriptor);
      }
    });
  });

  describe('when dividing out', () => {
    it('writes float32 quotients and leaves the sum', () => {
      const sum = Float64Array.of(1, 2, 3, 4, 5);
      const outputs = [new Float32Array(3), new Float32Array(2)];
      fold(sum, starts, [{ weight: 2, tensors: [Float32Array.of(1, 1, 1), Float32Array.of(0.1, -0)] }], false, 3, outputs, 2);
      expect(Array.from(outputs[0])).toEqual([1, 4 / 3, 5 / 3].map(Math.fround));
      expect(Array.from(outputs[1])).toEqual([Math.fround((4 + 2 * Math.fround(0.1)) / 3), Math.fround(5 / 3)]);
      expect(Array.from(sum)).toEqual([1, 2, 3, 4, 5]);
    });

    it('turns -0 into +0 when starting from zero', () => {
      const outputs = [new Float32Array(3), new Float32Array(2)];
      fold(new Float64Array(5), starts, [{ weight: 1, tensors: [Float32Array.of(-0, -0, -0), Float32Array.of(-0, -0)] }], true, 1, outputs, 1);
      expect(outputs.every((out) => out.every((v) => Object.is(v, 0)))).toBe(true);
    });
  });

  describe('when arguments are invalid', () => {
    const tensors = [new Float32Array(3), new Float32Array(2)];

    it('rejects an output of the wrong length', () => {
      expect(() => fold(new Float64Array(5), starts, [], false, 1, [new Float32Array(3), new Float32Array(1)], 1)).toThrow('outputs[1] holds 1 values, the tensor has 2');
    });

    it('rejects starts that do not end at the sum length', () => {
      expect(() => fold(new Float64Array(4), starts, [], false, 1, null, 1)).toThrow('sum holds 4 values, but starts ends at 5');
    });

    it('rejects falling starts', () => {
      expect(() => fold(new Float64Array(5), Float64Array.of(0, 6, 5), [], false, 1, null, 1)).toThrow('starts must rise from 0, but starts[2] is 5');
    });

    it('rejects a weight of zero', () => {
      expect(() => fold(new Float64Array(5), starts, [{ weight: 0, tensors }], false, 1, null, 1)).toThrow('sources[0] must be an object with a positive finite weight');
    });

    it('rejects a file source with 3 bytes per value', () => {
      const source = { weight: 1, descriptor: 0, path: 'x', bytesPerValue: 3, byteOffsets: Float64Array.of(0, 0) } as unknown as NativeFoldSource;
      expect(() => fold(new Float64Array(5), starts, [source], false, 1, null, 1)).toThrow('sources[0] must have tensors, or a descriptor, a path and bytesPerValue 2 or 4');
    });

    it('rejects a divisor of zero with outputs', () => {
      expect(() => fold(new Float64Array(5), starts, [], false, 0, tensors, 1)).toThrow('divisor must be a positive finite number when outputs are given');
    });

    it('rejects zero threads', () => {
      expect(() => fold(new Float64Array(5), starts, [], false, 1, null, 0)).toThrow('threads an integer from 1 to 64');
    });
  });
});
