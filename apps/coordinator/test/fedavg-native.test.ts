import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeWeights, encodeWeights, float16Table, type NamedTensor, type WireDtype } from '@covnet/protocol';
import { FedAvgAccumulator, tiledTensors, type ModelLayout, type TiledUpdate } from '../src/aggregation/fedavg';
import { loadNativeFold } from '../src/aggregation/native-fold';
import { BATCH_SLOTS, TILE_VALUES } from '../src/aggregation/simd-kernel';
import { StoredUpdate } from '../src/aggregation/stored-update';
import { updateValues as values } from './support/update-values';

const native = loadNativeFold().fold;

// Sizes with every tail of 1 to 15 values after the native kernel's 16-value steps, tensors
// that end just before, at and after a tile border, and an empty tensor. One tensor spans
// several tiles, so that neighbouring values are folded by different threads.
const SIZES = [...Array.from({ length: 17 }, (_, i) => i), TILE_VALUES - 136, 1, TILE_VALUES, 3 * TILE_VALUES + 5, 40_001, 0, 16, 255];
const LAYOUT: ModelLayout = SIZES.map((size, k) => ({ name: `layer${k}/w`, shape: [size] }));
const WEIGHTS = [37, 0.1, 2 ** 20, 1, 3, 1e-3, 7, 1000, 0.5, 13, 2 ** -10];

function updates(seedBase: number, count = WEIGHTS.length): NamedTensor[][] {
  return Array.from({ length: count }, (_, u) => LAYOUT.map((entry, k) => ({ name: entry.name, shape: entry.shape, data: values(entry.shape[0], seedBase + 100 * u + k) })));
}

/** Computes the FedAvg formula in float64: sum of w_j * x_j in list order from 0, divided by the total weight, rounded to float32. */
function formula(input: NamedTensor[][], weights: readonly number[]): NamedTensor[] {
  const total = weights.reduce((a, b) => a + b, 0);
  return LAYOUT.map((entry, k) => {
    const out = new Float32Array(entry.shape[0]);
    for (let i = 0; i < out.length; i++) {
      let sum = 0;
      input.forEach((u, j) => (sum += weights[j] * u[k].data[i]));
      out[i] = sum / total;
    }
    return { name: entry.name, shape: entry.shape, data: out };
  });
}

/** Returns the first value that differs in bits between two results, or null. */
function firstDifference(actual: NamedTensor[], expected: NamedTensor[]): string | null {
  for (let k = 0; k < expected.length; k++) {
    const i = actual[k].data.findIndex((v, j) => !Object.is(v, expected[k].data[j]));
    if (i >= 0) return `${expected[k].name}[${i}]: ${actual[k].data[i]} vs ${expected[k].data[i]}`;
  }
  return null;
}

describe.runIf(native !== null)('native FedAvg fold', () => {
  const directory = mkdtempSync(join(tmpdir(), 'covnet-native-fold-'));
  afterAll(() => rmSync(directory, { recursive: true, force: true }));

  /** Writes an update as a weight file, its tensors in reverse layout order. */
  function store(name: string, tensors: NamedTensor[], weight: number, dtype: WireDtype = 'float32'): StoredUpdate {
    const path = join(directory, `${name}.cvnw`);
    writeFileSync(path, encodeWeights([...tensors].reverse(), dtype));
    return new StoredUpdate(path, weight, LAYOUT, decodeWeights(readFileSync(path)));
  }

  describe.each(['float32', 'float16'] as const)('when folding %s files', (dtype) => {
    const input = updates(1);
    const files = input.map((u, j) => store(`${dtype}-${j}`, u, WEIGHTS[j], dtype));
    // What the fold must see: the values as the file stores them.
    const decoded = files.map((file) => decodeWeights(readFileSync(file.path)).tensors);
    const inLayoutOrder = decoded.map((tensors) => LAYOUT.map((entry) => tensors.find((t) => t.name === entry.name)!));

    it('covers two batches', () => {
      expect(files.length).toBeGreaterThan(BATCH_SLOTS);
    });

    it('matches the float64 formula with resultAfter', () => {
      const mean = new FedAvgAccumulator(LAYOUT, { kernel: 'native' }).resultAfter(files);
      expect(firstDifference(mean, formula(inLayoutOrder, WEIGHTS))).toBeNull();
    });

    it('matches the scalar loop with addBatch and result', () => {
      const accumulator = new FedAvgAccumulator(LAYOUT, { kernel: 'native' });
      accumulator.addBatch(files);
      const scalar = new FedAvgAccumulator(LAYOUT, { kernel: 'scalar' });
      scalar.addBatch(files);
      expect(firstDifference(accumulator.result(), scalar.result())).toBeNull();
    });

    it('matches the wasm kernel one update at a time', () => {
      const accumulator = new FedAvgAccumulator(LAYOUT, { kernel: 'native' });
      const wasm = new FedAvgAccumulator(LAYOUT, { kernel: 'wasm' });
      for (const file of files) {
        accumulator.addBatch([file]);
        wasm.addBatch([file]);
      }
      expect(firstDifference(accumulator.result(), wasm.result())).toBeNull();
    });
  });

  it('folds a batch mixing files, memory and readTile-only updates', () => {
    const input = updates(5, 6);
    const readTileOnly = (u: NamedTensor[], weight: number): TiledUpdate => {
      const { readTile } = tiledTensors(LAYOUT, u, weight);
      return { weight, readTile };
    };
    const batch = [store('mixed-0', input[0], WEIGHTS[0]), tiledTensors(LAYOUT, input[1], WEIGHTS[1]), store('mixed-2', input[2], WEIGHTS[2])];
    const tail = [readTileOnly(input[3], WEIGHTS[3]), tiledTensors(LAYOUT, input[4], WEIGHTS[4]), store('mixed-5', input[5], WEIGHTS[5])];
    const accumulator = new FedAvgAccumulator(LAYOUT, { kernel: 'native' });
    accumulator.addBatch(batch);
    // The tail contains an update that only readTile reads, so the wasm kernel folds it into the same sum.
    const mean = accumulator.resultAfter(tail);
    expect(firstDifference(mean, formula(input, WEIGHTS.slice(0, 6)))).toBeNull();
  });

  it('converts every float16 value but NaN exactly', () => {
    const table = float16Table();
    const finite = Float32Array.from(Array.from(table).filter((v) => !Number.isNaN(v)));
    const layout: ModelLayout = [{ name: 'all', shape: [finite.length] }];
    const path = join(directory, 'all-float16.cvnw');
    writeFileSync(path, encodeWeights([{ name: 'all', shape: [finite.length], data: finite }], 'float16'));
    const update = new StoredUpdate(path, 3, layout, decodeWeights(readFileSync(path)));
    const mean = new FedAvgAccumulator(layout, { kernel: 'native' }).resultAfter([update])[0].data;
    // 3x is exact in float64 for an 11-bit significand, and so is dividing it by 3 again, so
    // each value comes back but -0, which the sum turns into 0 + -0 = +0.
    const expected = finite.map((x) => (0 + 3 * x) / 3);
    expect(finite.length).toBe(65_536 - 2 * 1023);
    expect(expected.filter((v, i) => !Object.is(v, finite[i]))).toEqual(Float32Array.of(0));
    const mismatch = mean.findIndex((v, i) => !Object.is(v, expected[i]));
    expect(mismatch, `value ${finite[mismatch]} became ${mean[mismatch]}`).toBe(-1);
  });

  it.each([1, 2, 3])('gives the formula bits on %i threads', (threads) => {
    const input = updates(9, 4);
    const weights = WEIGHTS.slice(0, 4);
    const total = weights.reduce((a, b) => a + b, 0);
    const starts = Float64Array.from([0, ...SIZES.map((_, k) => SIZES.slice(0, k + 1).reduce((a, b) => a + b, 0))]);
    const sum = new Float64Array(starts[starts.length - 1]).fill(Number.NaN);
    const outputs = LAYOUT.map((entry) => new Float32Array(entry.shape[0]));
    const sources = input.map((u, j) => ({ weight: weights[j], tensors: u.map((t) => t.data) }));
    // The first two updates overwrite the sum, which is NaN before. The other two are divided out.
    native!.kernels.fedAvgFold(sum, starts, sources.slice(0, 2), true, 1, null, threads);
    native!.kernels.fedAvgFold(sum, starts, sources.slice(2), false, total, outputs, threads);
    const actual = LAYOUT.map((entry, k) => ({ name: entry.name, shape: entry.shape, data: outputs[k] }));
    expect(firstDifference(actual, formula(input, weights))).toBeNull();
  });

  describe('when a stored file ends early', () => {
    /** Stores an update in layout order and truncates it 14 bytes into its first tensor's values. */
    function truncated(name: string): { update: StoredUpdate; end: number } {
      const path = join(directory, `${name}.cvnw`);
      const payload = encodeWeights(updates(3, 1)[0]);
      writeFileSync(path, payload);
      const decoded = decodeWeights(payload);
      const end = decoded.dataOffsets[1] + 14;
      truncateSync(path, end);
      return { update: new StoredUpdate(path, 2, LAYOUT, decoded), end };
    }

    it('names the file and byte as the wasm fold does', () => {
      const { update, end } = truncated('truncated-native');
      const message = `stored update ${update.path} is truncated: it ends before byte ${end}, where values of the global model are expected`;
      expect(() => new FedAvgAccumulator(LAYOUT, { kernel: 'native' }).addBatch([update])).toThrow(message);
      expect(() => new FedAvgAccumulator(LAYOUT, { kernel: 'wasm' }).addBatch([update])).toThrow(message);
      expect(() => new FedAvgAccumulator(LAYOUT, { kernel: 'native' }).resultAfter([update])).toThrow(message);
    });

    it('folds again after reset', () => {
      const { update } = truncated('truncated-reset');
      const good = updates(4, 2);
      const accumulator = new FedAvgAccumulator(LAYOUT, { kernel: 'native' });
      accumulator.add(good[0], 5);
      expect(() => accumulator.addBatch([update])).toThrow('is truncated');
      accumulator.reset();
      accumulator.add(good[1], 2);
      expect(firstDifference(accumulator.result(), formula([good[1]], [2]))).toBeNull();
    });

    it('closes the file', () => {
      const { update } = truncated('truncated-closed');
      expect(() => new FedAvgAccumulator(LAYOUT, { kernel: 'native' }).addBatch([update])).toThrow('is truncated');
      expect((update as unknown as { descriptor: number | null }).descriptor).toBeNull();
    });
  });
});

describe('FedAvg kernel choice', () => {
  it('uses the wasm kernel with COVNET_NATIVE_KERNELS=0 and says why', () => {
    const aggregation = join(__dirname, '..', 'src', 'aggregation');
    const script = [
      `const { FedAvgAccumulator } = require(${JSON.stringify(join(aggregation, 'fedavg.ts'))});`,
      `const { describeFoldKernel } = require(${JSON.stringify(join(aggregation, 'native-fold.ts'))});`,
      `const accumulator = new FedAvgAccumulator([{ name: 'w', shape: [3] }]);`,
      `accumulator.add([{ name: 'w', shape: [3], data: new Float32Array([1, -2, 0.5]) }], 4);`,
      `let nativeError = null; try { new FedAvgAccumulator([{ name: 'w', shape: [3] }], { kernel: 'native' }); } catch (e) { nativeError = e.message; }`,
      `console.log(JSON.stringify({ kernel: accumulator.kernel, log: describeFoldKernel(), mean: Array.from(accumulator.result()[0].data), nativeError }));`,
    ].join('\n');
    const child = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8', env: { ...process.env, COVNET_NATIVE_KERNELS: '0' } });
    expect(child.status, child.stderr).toBe(0);
    const report = JSON.parse(child.stdout) as { kernel: string; log: string; mean: number[]; nativeError: string | null };
    expect(report.kernel).toBe('wasm');
    expect(report.log).toBe('FedAvg folds updates with the WebAssembly SIMD kernel on the main thread, because the native kernels are unavailable: COVNET_NATIVE_KERNELS=0 turns them off');
    expect(report.mean).toEqual([1, -2, 0.5]);
    expect(report.nativeError).toBe('the native FedAvg fold is unavailable: COVNET_NATIVE_KERNELS=0 turns them off');
  });

  it.runIf(native !== null)('uses the native kernel by default where it loads', () => {
    expect(new FedAvgAccumulator(LAYOUT).kernel).toBe('native');
  });
});
