import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeWeights, encodeWeights, type NamedTensor, type WireDtype } from '@covnet/protocol';
import { FedAvgAccumulator, fedAvg, tiledTensors, type ModelLayout } from '../src/aggregation/fedavg';
import { loadNativeFold, type FoldKernel } from '../src/aggregation/native-fold';
import { BATCH_SLOTS, TILE_VALUES } from '../src/aggregation/simd-kernel';
import { StoredUpdate } from '../src/aggregation/stored-update';
import { WaitingFolds } from '../src/rounds/waiting-folds';
import { updateValues as values } from './support/update-values';

// Odd sizes around the tile size, tails of 1 to 7 values after the kernel's
// 8-value steps, an empty tensor, and many small tensors that share a tile.
const SIZES = [7, 3, 0, TILE_VALUES - 1, TILE_VALUES + 1, 1, 2 * TILE_VALUES + 13, 40_001, ...Array.from({ length: 40 }, (_, i) => 1 + ((i * 37) % 300))];
const LAYOUT: ModelLayout = SIZES.map((size, k) => ({ name: `layer${k}/w`, shape: [size] }));
// More updates than BATCH_SLOTS, so that addBatch folds them in two kernel passes.
const WEIGHTS = [37, 0.1, 2 ** 20, 1, 3, 1e-3, 7, 1000, 0.5, 13, 2 ** -10];

function updates(seedBase: number): NamedTensor[][] {
  return WEIGHTS.map((_, u) => LAYOUT.map((entry, k) => ({ name: entry.name, shape: entry.shape, data: values(entry.shape[0], seedBase + 100 * u + k) })));
}

/** Returns the index of the first value that differs in bits between two results, or null. */
function firstDifference(actual: NamedTensor[], expected: NamedTensor[]): string | null {
  for (let k = 0; k < expected.length; k++) {
    const i = actual[k].data.findIndex((v, j) => !Object.is(v, expected[k].data[j]));
    if (i >= 0) return `${expected[k].name}[${i}]: ${actual[k].data[i]} vs ${expected[k].data[i]}`;
  }
  return null;
}

// The wasm kernel always; the native one where @covnet/native-kernels is built for this CPU.
const KERNELS: FoldKernel[] = loadNativeFold().fold === null ? ['wasm'] : ['wasm', 'native'];

describe.each(KERNELS)('with the %s kernel', (kernel) => {
  describe('FedAvgAccumulator.addBatch', () => {
    const input = updates(1);

    it('covers more than one kernel pass', () => {
      expect(WEIGHTS.length).toBeGreaterThan(BATCH_SLOTS);
    });

    it('matches one add per update bit for bit', () => {
      const batched = new FedAvgAccumulator(LAYOUT, { kernel });
      batched.addBatch(input.map((u, j) => tiledTensors(LAYOUT, u, WEIGHTS[j])));
      const oneByOne = new FedAvgAccumulator(LAYOUT, { kernel });
      input.forEach((u, j) => oneByOne.add(u, WEIGHTS[j]));
      expect(firstDifference(batched.result(), oneByOne.result())).toBeNull();
      expect(batched.updates).toBe(WEIGHTS.length);
      expect(batched.weight).toBe(oneByOne.weight);
    });

    it('matches the scalar loop bit for bit', () => {
      const batched = new FedAvgAccumulator(LAYOUT, { kernel });
      batched.addBatch(input.map((u, j) => tiledTensors(LAYOUT, u, WEIGHTS[j])));
      const scalar = new FedAvgAccumulator(LAYOUT, { kernel: 'scalar' });
      input.forEach((u, j) => scalar.add(u, WEIGHTS[j]));
      expect(firstDifference(batched.result(), scalar.result())).toBeNull();
    });

    it('matches the float64 formula bit for bit', () => {
      const batched = new FedAvgAccumulator(LAYOUT, { kernel });
      batched.addBatch(input.map((u, j) => tiledTensors(LAYOUT, u, WEIGHTS[j])));
      const total = WEIGHTS.reduce((a, b) => a + b, 0);
      const expected = LAYOUT.map((entry, k) => {
        const out = new Float32Array(entry.shape[0]);
        for (let i = 0; i < out.length; i++) {
          let sum = 0;
          input.forEach((u, j) => (sum += WEIGHTS[j] * u[k].data[i]));
          out[i] = sum / total;
        }
        return { name: entry.name, shape: entry.shape, data: out };
      });
      expect(firstDifference(batched.result(), expected)).toBeNull();
    });

    it('gives the same sum for any split into batches', () => {
      const whole = new FedAvgAccumulator(LAYOUT, { kernel });
      whole.addBatch(input.map((u, j) => tiledTensors(LAYOUT, u, WEIGHTS[j])));
      const split = new FedAvgAccumulator(LAYOUT, { kernel });
      split.add(input[0], WEIGHTS[0]);
      split.addBatch(input.slice(1, 4).map((u, j) => tiledTensors(LAYOUT, u, WEIGHTS[j + 1])));
      split.addBatch(input.slice(4).map((u, j) => tiledTensors(LAYOUT, u, WEIGHTS[j + 4])));
      expect(firstDifference(split.result(), whole.result())).toBeNull();
    });

    it('adds the updates in list order', () => {
      // Update 0 is 1e30 and update 5 is -1e30 everywhere. Float64 absorbs the
      // small values of updates 1-4 into 1e30, so the mean keeps only what
      // updates 6-10 add after the cancellation, and any other order of the
      // updates gives another mean.
      const cancelling = updates(11).map((u, j) =>
        j === 0 || j === 5 ? u.map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(j === 0 ? 1e30 : -1e30) })) : u,
      );
      const formula = (order: number[]) =>
        LAYOUT.map((entry, k) => {
          const out = new Float32Array(entry.shape[0]);
          for (let i = 0; i < out.length; i++) {
            let sum = 0;
            for (const j of order) sum += cancelling[j][k].data[i];
            out[i] = sum / order.length;
          }
          return { name: entry.name, shape: entry.shape, data: out };
        });
      const inOrder = cancelling.map((_, j) => j);
      const accumulator = new FedAvgAccumulator(LAYOUT, { kernel });
      accumulator.addBatch(cancelling.map((u) => tiledTensors(LAYOUT, u, 1)));
      expect(firstDifference(accumulator.result(), formula(inOrder))).toBeNull();
      expect(firstDifference(accumulator.result(), formula([...inOrder].reverse()))).not.toBeNull();
    });

    it('starts a new sum after reset', () => {
      const accumulator = new FedAvgAccumulator(LAYOUT, { kernel });
      accumulator.addBatch(input.map((u, j) => tiledTensors(LAYOUT, u, WEIGHTS[j])));
      accumulator.reset();
      const second = updates(7).slice(0, 3);
      accumulator.addBatch(second.map((u, j) => tiledTensors(LAYOUT, u, WEIGHTS[j])));
      const expected = fedAvg(LAYOUT, second.map((tensors, j) => ({ tensors, weight: WEIGHTS[j] })));
      expect(firstDifference(accumulator.result(), expected)).toBeNull();
      expect(accumulator.updates).toBe(3);
    });

    it('rejects a batch with a weight of zero before folding any of it', () => {
      const accumulator = new FedAvgAccumulator(LAYOUT, { kernel });
      const batch = [tiledTensors(LAYOUT, input[0], 1), { ...tiledTensors(LAYOUT, input[1], 1), weight: 0 }];
      expect(() => accumulator.addBatch(batch)).toThrow('update weight 0 is not a positive number');
      expect(accumulator.updates).toBe(0);
    });
  });

  describe('StoredUpdate', () => {
    const directory = mkdtempSync(join(tmpdir(), 'covnet-stored-update-'));
    afterAll(() => rmSync(directory, { recursive: true, force: true }));

    /** Writes the update with its tensors in reverse layout order; returns the path and the decoded file. */
    function store(name: string, tensors: NamedTensor[], dtype: WireDtype) {
      const path = join(directory, `${name}.cvnw`);
      writeFileSync(path, encodeWeights([...tensors].reverse(), dtype));
      const decoded = decodeWeights(encodeWeights([...tensors].reverse(), dtype));
      return { path, decoded };
    }

    it.each(['float32', 'float16'] as const)('folds %s files as their decoded tensors', (dtype) => {
      const input = updates(3).slice(0, BATCH_SLOTS + 2);
      const files = input.map((u, j) => store(`${dtype}-${j}`, u, dtype));
      const accumulator = new FedAvgAccumulator(LAYOUT, { kernel });
      accumulator.addBatch(files.map((file, j) => new StoredUpdate(file.path, WEIGHTS[j], LAYOUT, file.decoded)));
      const expected = fedAvg(LAYOUT, files.map((file, j) => ({ tensors: file.decoded.tensors, weight: WEIGHTS[j] })));
      expect(firstDifference(accumulator.result(), expected)).toBeNull();
    });

    it('names the file when it ends early', () => {
      const file = store('truncated', updates(5)[0], 'float32');
      const update = new StoredUpdate(file.path, 1, LAYOUT, file.decoded);
      truncateSync(file.path, 1000);
      expect(() => new FedAvgAccumulator(LAYOUT, { kernel }).addBatch([update])).toThrow(`stored update ${file.path} is truncated: it ends before byte`);
    });

    it('rejects a file that does not fit the layout', () => {
      const file = store('short', updates(5)[0].slice(1), 'float32');
      expect(() => new StoredUpdate(file.path, 1, LAYOUT, file.decoded)).toThrow(`stored update ${file.path} does not fit the global model: update has ${LAYOUT.length - 1} tensors, expected ${LAYOUT.length}`);
    });
  });

  describe('WaitingFolds', () => {
    const directory = mkdtempSync(join(tmpdir(), 'covnet-waiting-folds-'));
    afterAll(() => rmSync(directory, { recursive: true, force: true }));

    function stored(name: string, tensors: NamedTensor[], weight: number): StoredUpdate {
      const path = join(directory, `${name}.cvnw`);
      const payload = encodeWeights(tensors);
      writeFileSync(path, payload);
      return new StoredUpdate(path, weight, LAYOUT, decodeWeights(payload));
    }

    it('folds every waiting update in one flush', async () => {
      const input = updates(9).slice(0, 3);
      const accumulator = new FedAvgAccumulator(LAYOUT, { kernel });
      const folds = new WaitingFolds(accumulator);
      const folded = input.map((u, j) => folds.push(stored(`waiting-${j}`, u, WEIGHTS[j])));
      expect(accumulator.updates).toBe(0);
      expect(folds.flush()).toBe(3);
      await Promise.all(folded);
      const expected = fedAvg(LAYOUT, input.map((tensors, j) => ({ tensors, weight: WEIGHTS[j] })));
      expect(firstDifference(accumulator.result(), expected)).toBeNull();
      expect(folds.size).toBe(0);
    });

    it('keeps failing after a file could not be read', async () => {
      const folds = new WaitingFolds(new FedAvgAccumulator(LAYOUT, { kernel }));
      const update = stored('vanishing', updates(9)[0], 1);
      rmSync(update.path);
      const folded = folds.push(update);
      expect(() => folds.flush()).toThrow(/folding 1 stored updates into the FedAvg sum failed, so the sum is incomplete: ENOENT/);
      await expect(folded).rejects.toThrow(/sum is incomplete/);
      expect(() => folds.flush()).toThrow(/sum is incomplete/);
      expect(() => folds.flushWithResult()).toThrow(/sum is incomplete/);
    });

    it('returns the mean of what was folded and what waits', () => {
      const input = updates(13).slice(0, BATCH_SLOTS + 3);
      const accumulator = new FedAvgAccumulator(LAYOUT, { kernel });
      const folds = new WaitingFolds(accumulator);
      folds.push(stored('early', input[0], WEIGHTS[0]));
      folds.flush();
      input.slice(1).forEach((u, j) => folds.push(stored(`late-${j}`, u, WEIGHTS[j + 1])));
      const mean = folds.flushWithResult();
      const expected = fedAvg(LAYOUT, input.map((tensors, j) => ({ tensors, weight: WEIGHTS[j] })));
      expect(firstDifference(mean, expected)).toBeNull();
      expect(accumulator.updates).toBe(input.length);
    });
  });

  describe('FedAvgAccumulator.resultAfter', () => {
    const input = updates(21);

    it.each([1, 3, BATCH_SLOTS, BATCH_SLOTS + 1, WEIGHTS.length])('matches addBatch and result for %i updates', (count) => {
      const expectedAccumulator = new FedAvgAccumulator(LAYOUT, { kernel });
      expectedAccumulator.add(input[0], 5);
      expectedAccumulator.addBatch(input.slice(0, count).map((u, j) => tiledTensors(LAYOUT, u, WEIGHTS[j])));
      const accumulator = new FedAvgAccumulator(LAYOUT, { kernel });
      accumulator.add(input[0], 5);
      const mean = accumulator.resultAfter(input.slice(0, count).map((u, j) => tiledTensors(LAYOUT, u, WEIGHTS[j])));
      expect(firstDifference(mean, expectedAccumulator.result())).toBeNull();
      expect(accumulator.weight).toBe(expectedAccumulator.weight);
    });

    it('matches the scalar loop on an empty accumulator', () => {
      const mean = new FedAvgAccumulator(LAYOUT, { kernel }).resultAfter(input.map((u, j) => tiledTensors(LAYOUT, u, WEIGHTS[j])));
      const scalar = new FedAvgAccumulator(LAYOUT, { kernel: 'scalar' });
      input.forEach((u, j) => scalar.add(u, WEIGHTS[j]));
      expect(firstDifference(mean, scalar.result())).toBeNull();
    });

    it('allows only reset afterwards', () => {
      const accumulator = new FedAvgAccumulator(LAYOUT, { kernel });
      accumulator.resultAfter([tiledTensors(LAYOUT, input[0], 1)]);
      expect(() => accumulator.result()).toThrow('reset it before adding or dividing again');
      expect(() => accumulator.add(input[1], 1)).toThrow('reset it before adding or dividing again');
      accumulator.reset();
      accumulator.add(input[1], 2);
      expect(firstDifference(accumulator.result(), fedAvg(LAYOUT, [{ tensors: input[1], weight: 2 }]))).toBeNull();
    });
  });
});
