import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadNativeKernels } from '../src/index';

const kernels = loadNativeKernels().kernels;
const ADDON = path.join(__dirname, '..', 'build', 'covnet_kernels.node');

/**
 * Runs `body` in a child Node with --expose-gc, so a crash of the addon fails the test
 * instead of the test runner. The body gets the addon as `k` and prints its outcome.
 */
function runInChild(body: string): { status: number | null; signal: string | null; stdout: string; stderr: string } {
  const script = `const k = require(${JSON.stringify(ADDON)});\n${body}`;
  const child = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  return { status: child.status, signal: child.signal, stdout: child.stdout.trim(), stderr: child.stderr.trim() };
}

// 16 MiB arrays: glibc maps them with mmap and unmaps them when freed, so a write through a
// stale pointer faults instead of landing quietly in the heap.
const DETACH_IN_GETTER = `
const n = 1 << 22;
const F = (v = 0) => new Float32Array(n).fill(v);
function detach(array) { structuredClone(array.buffer, { transfer: [array.buffer] }); gc(); gc(); }
function outcome(run) {
  try { run(); console.log('returned'); } catch (error) { console.log(error.constructor.name + ': ' + error.message); }
}
`;

describe.runIf(kernels !== null)('native kernel arguments', () => {
  const k = kernels!;
  const n = 8;
  const floats = (value = 0) => new Float32Array(n).fill(value);
  const adamMean = (over: { divisor?: number; correction1?: number; rate?: number; epsilon?: number; threads?: number } = {}) =>
    k.adamStepMean(floats(1), floats(), floats(), [floats(2)], over.divisor ?? 1, floats(), floats(), floats(), over.rate ?? 0.1, 0.9, 0.999, over.epsilon ?? 1e-7, over.correction1 ?? 0.1, 0.001, over.threads ?? 1);

  describe('adamStepMean', () => {
    describe('when a getter of parts detaches wOut', () => {
      it('throws instead of writing into freed memory', () => {
        const child = runInChild(`${DETACH_IN_GETTER}
const wOut = F();
const parts = [];
Object.defineProperty(parts, 0, { enumerable: true, get() { detach(wOut); return F(2); } });
outcome(() => k.adamStepMean(F(1), F(), F(), parts, 1, wOut, F(), F(), 0.1, 0.9, 0.999, 1e-7, 0.1, 0.001, 1));
`);
        expect(child.signal).toBeNull();
        expect(child.stdout).toBe('RangeError: wOut holds 0 values, w holds 4194304');
      });
    });

    describe('when a getter of parts[1] detaches parts[0]', () => {
      it('throws instead of reading freed memory', () => {
        const child = runInChild(`${DETACH_IN_GETTER}
const first = F(2);
const parts = [first];
Object.defineProperty(parts, 1, { enumerable: true, get() { detach(first); return F(2); } });
outcome(() => k.adamStepMean(F(1), F(), F(), parts, 1, F(), F(), F(), 0.1, 0.9, 0.999, 1e-7, 0.1, 0.001, 1));
`);
        expect(child.signal).toBeNull();
        expect(child.stdout).toBe('RangeError: parts[0] holds 0 values, w holds 4194304');
      });
    });

    describe('when a number is finite in float64 but not in float32', () => {
      // The kernel computes in float32: 1e-46 rounds to 0 there and 1e39 to infinity.
      it.each([
        ['divisor', { divisor: 1e-46 }, /^divisor must be a positive finite number/],
        ['divisor', { divisor: 1e39 }, /^divisor must be a positive finite number/],
        ['correction1', { correction1: 1e-46 }, /bias corrections must be positive/],
        ['rate', { rate: 1e39 }, /must be finite numbers/],
        ['epsilon', { epsilon: 1e39 }, /must be finite numbers/],
      ])('rejects %s %o', (_, over, message) => {
        expect(() => adamMean(over)).toThrow(message);
      });
    });

    describe('when threads is not an integer from 1 to 256', () => {
      // Int32 conversion would take 1.9 as 1 and 2^32 + 2 as 2.
      it.each([1.9, 2 ** 32 + 2, -0.5])('rejects %d', (threads) => {
        expect(() => adamMean({ threads })).toThrow('threads must be an integer from 1 to 256');
      });
    });

    describe('when an output overlaps another argument', () => {
      // Threads write their ranges concurrently, so overlapping arrays give racy values.
      it('rejects wOut shifted over parts[0]', () => {
        const buffer = new Float32Array(2 * n);
        expect(() => k.adamStepMean(floats(1), floats(), floats(), [buffer.subarray(0, n)], 1, buffer.subarray(1, n + 1), floats(), floats(), 0.1, 0.9, 0.999, 1e-7, 0.1, 0.001, 2)).toThrow(
          'wOut shares memory with parts[0]: an output may only be the very array that it replaces, or apart from every other argument',
        );
      });
    });

    describe('when the outputs are the inputs they replace', () => {
      it('steps in place', () => {
        const w = floats(1);
        const m = floats();
        const v = floats();
        k.adamStepMean(w, m, v, [floats(2)], 1, w, m, v, 0.1, 0.9, 0.999, 1e-7, 0.1, 0.001, 2);
        expect(w[0]).toBeCloseTo(1 - (0.1 * 2) / (2 + 1e-7), 5);
        expect(m[0]).toBeCloseTo(0.2, 6);
      });
    });

    describe('when the arrays share a SharedArrayBuffer', () => {
      it('steps as with separate arrays', () => {
        const shared = new Float32Array(new SharedArrayBuffer(7 * n * 4));
        const view = (i: number) => shared.subarray(i * n, (i + 1) * n);
        view(0).fill(1);
        view(3).fill(2);
        k.adamStepMean(view(0), view(1), view(2), [view(3)], 1, view(4), view(5), view(6), 0.1, 0.9, 0.999, 1e-7, 0.1, 0.001, 2);
        // m = 0.1 * 2, v = 0.001 * 4, w = 1 - 0.1 * (0.2 / 0.1) / (sqrt(0.004 / 0.001) + 1e-7), in float64.
        const expected = 1 - (0.1 * 2) / (2 + 1e-7);
        expect(view(4)[0]).toBeCloseTo(expected, 5);
        expect(view(5)[n - 1]).toBeCloseTo(0.2, 7);
        expect(view(6)[n - 1]).toBeCloseTo(0.004, 6);
      });
    });
  });

  describe('adamStep', () => {
    describe('when mOut is w', () => {
      // adamStep reads w[i] after it writes mOut[i], so the step would use the new moment as the weight.
      it('rejects it instead of a wrong step', () => {
        const w = floats(1);
        expect(() => k.adamStep(w, floats(), floats(), floats(2), floats(), w, floats(), 0.1, 0.9, 0.999, 1e-7, 0.1, 0.001)).toThrow(/^mOut shares memory with w:/);
        expect(w[0]).toBe(1);
      });
    });
  });

  describe('fedAvgFold', () => {
    describe('when a getter of a source detaches sum', () => {
      it('throws instead of writing into freed memory', () => {
        const child = runInChild(`${DETACH_IN_GETTER}
const sum = new Float64Array(n);
const source = { get weight() { detach(sum); return 1; }, tensors: [F(1)] };
outcome(() => k.fedAvgFold(sum, Float64Array.of(0, n), [source], false, 1, null, 1));
`);
        expect(child.signal).toBeNull();
        expect(child.stdout).toBe('RangeError: sum changed while the other arguments were read: it holds 0 values, it held 4194304');
      });
    });

    describe('when a getter of a later source detaches an earlier source\'s tensor', () => {
      it('throws instead of reading freed memory', () => {
        const child = runInChild(`${DETACH_IN_GETTER}
const tensor = F(1);
const sources = [{ weight: 1, tensors: [tensor] }, { get weight() { detach(tensor); return 1; }, tensors: [F(1)] }];
outcome(() => k.fedAvgFold(new Float64Array(n), Float64Array.of(0, n), sources, false, 1, null, 1));
`);
        expect(child.signal).toBeNull();
        expect(child.stdout).toBe('RangeError: sources[0].tensors[0] changed while the other arguments were read: it holds 0 values, it held 4194304');
      });
    });

    describe('when threads is not an integer from 1 to 64', () => {
      it.each([1.5, 2 ** 32 + 1])('rejects %d', (threads) => {
        const sum = new Float64Array(2);
        expect(() => k.fedAvgFold(sum, Float64Array.of(0, 2), [{ weight: 1, tensors: [Float32Array.of(1, 1)] }], false, 1, null, threads)).toThrow(/threads an integer from 1 to 64/);
      });
    });
  });

  describe('integer arguments', () => {
    // Int32 and Int64 conversion would truncate each of these to a valid value.
    it('rejects a conv2dForward activation of 1.5', () => {
      const shape = Int32Array.of(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0);
      expect(() => k.conv2dForward(Float32Array.of(1), Float32Array.of(1), null, new Float32Array(1), shape, 1.5 as 1)).toThrow('activation must be 0 (linear) or 1 (relu)');
    });

    it.each([
      ['rows 1.5', 1.5, 1, 1e-3],
      ['channels 2^32 + 1', 1, 2 ** 32 + 1, 1e-3],
      ['epsilon Infinity', 1, 1, Number.POSITIVE_INFINITY],
      ['epsilon 1e-46', 1, 1, 1e-46],
    ])('rejects batchNormInference %s', (_, rows, channels, epsilon) => {
      const one = () => Float32Array.of(1);
      expect(() => k.batchNormInference(rows, channels, epsilon, one(), one(), one(), null, null, one())).toThrow(/^rows and channels must be positive integers/);
    });

    it('rejects a fedAvgFold descriptor of 0.5', () => {
      const source = { weight: 1, descriptor: 0.5, path: 'update.bin', bytesPerValue: 4 as const, byteOffsets: Float64Array.of(0) };
      expect(() => k.fedAvgFold(new Float64Array(1), Float64Array.of(0, 1), [source], true, 1, null, 1)).toThrow(/^sources\[0\] must have tensors, or a descriptor/);
    });

    it('rejects a fedAvgFold bytesPerValue of 3', () => {
      const source = { weight: 1, descriptor: 0, path: 'update.bin', bytesPerValue: 3 as 4, byteOffsets: Float64Array.of(0) };
      expect(() => k.fedAvgFold(new Float64Array(1), Float64Array.of(0, 1), [source], true, 1, null, 1)).toThrow(/^sources\[0\] must have tensors, or a descriptor/);
    });
  });

  describe('useConvolutionInstructions', () => {
    describe('when the name has a NUL character after a valid name', () => {
      it('rejects it', () => {
        const before = k.convolutionInstructions();
        expect(() => k.useConvolutionInstructions('avx2\0junk' as 'avx2')).toThrow("the instruction set must be 'avx512' or 'avx2'");
        expect(k.convolutionInstructions()).toBe(before);
      });
    });

    describe('when the name is longer than any instruction set', () => {
      it('rejects it', () => {
        expect(() => k.useConvolutionInstructions('avx2'.padEnd(4096, 'x') as 'avx2')).toThrow("the instruction set must be 'avx512' or 'avx2'");
      });
    });
  });

  describe('reluGrad', () => {
    describe('when dx is dy shifted by one', () => {
      it('rejects it', () => {
        const buffer = new Float32Array(5);
        expect(() => k.reluGrad(buffer.subarray(0, 4), Float32Array.of(1, 1, 1, 1), buffer.subarray(1, 5))).toThrow(/^dx shares memory with dy:/);
      });
    });

    describe('when dx is dy', () => {
      it('computes in place', () => {
        const dy = Float32Array.of(3, 3, 3, 3);
        k.reluGrad(dy, Float32Array.of(-1, 0, 2, Number.NaN), dy);
        expect(Array.from(dy)).toEqual([0, 0, 3, Number.NaN]);
      });
    });

    describe('when dx is x', () => {
      it('computes in place', () => {
        const x = Float32Array.of(-1, 0, 2, Number.NaN);
        k.reluGrad(Float32Array.of(3, 3, 3, 3), x, x);
        expect(Array.from(x)).toEqual([0, 0, 3, Number.NaN]);
      });
    });
  });
});
