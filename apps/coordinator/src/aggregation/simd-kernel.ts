/**
 * WebAssembly SIMD kernels of the FedAvg running sum, emitted as bytes here
 * so that no assembler or binary file is needed:
 *
 *   foldMany(sum, table, k, n, overwrite):
 *       for i < n: s = overwrite ? 0 : sum[i]
 *                  for j < k: s = s + w_j * f64(src_j[i])
 *                  sum[i] = s
 *   foldManyDivide(sum, table, k, n, overwrite, dst, d):
 *       the same s, written as dst[i] = f32(s / d) and not to sum[i]
 *   divide(sum, dst, n, d):    dst[i] = f32(sum[i] / d)     for i < n
 *
 * `sum` points to float64 values and `src_j`, `dst` to float32 values, all in
 * the instance's memory; the table lists the k pairs (src_j, w_j). Each lane
 * performs the same IEEE operations as the scalar JavaScript loop
 * `sum[i] += w * data[i]` run once per update in table order (promote,
 * multiply, add, with no fused multiply-add), so both give bit-identical sums.
 */

const I32 = 0x7f;
const F64 = 0x7c;
const V128 = 0x7b;

const op = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  end: [0x0b],
  br: (depth: number) => [0x0c, depth],
  brIf: (depth: number) => [0x0d, depth],
  get: (index: number) => [0x20, index],
  set: (index: number) => [0x21, index],
  i32Const: (value: number) => [0x41, ...sleb(value)],
  i32Add: [0x6a],
  i32Load: (offset: number) => [0x28, 2, ...uleb(offset)],
  if: (type: number) => [0x04, type],
  else: [0x05],
  i32And: [0x71],
  i32Shl: [0x74],
  i32GeU: [0x4f],
  f32Load: (offset: number) => [0x2a, 2, ...uleb(offset)],
  f32Store: (offset: number) => [0x38, 2, ...uleb(offset)],
  f64Load: (offset: number) => [0x2b, 3, ...uleb(offset)],
  f64Store: (offset: number) => [0x39, 3, ...uleb(offset)],
  f64Add: [0xa0],
  f64Mul: [0xa2],
  f64Div: [0xa3],
  f64PromoteF32: [0xbb],
  f32DemoteF64: [0xb6],
  simd: (code: number, ...immediates: number[]) => [0xfd, ...uleb(code), ...immediates],
};

// SIMD opcodes from the WebAssembly 2.0 specification (section 5.4.8).
const v128Load = (offset: number) => op.simd(0x00, 4, ...uleb(offset));
const v128Store = (offset: number) => op.simd(0x0b, 4, ...uleb(offset));
const i8x16Shuffle = (lanes: number[]) => op.simd(0x0d, ...lanes);
const f64x2Splat = op.simd(0x14);
const f32x4DemoteF64x2Zero = op.simd(0x5e);
const f64x2PromoteLowF32x4 = op.simd(0x5f);
const f64x2Add = op.simd(0xf0);
const f64x2Mul = op.simd(0xf2);
const f64x2Div = op.simd(0xf3);

// Moves lanes 2 and 3 of a f32x4 to lanes 0 and 1, where promote_low reads them.
const HIGH_HALF = [8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15];
// Joins the low 8 bytes of two vectors: two demoted f64x2 become one f32x4.
const LOW_HALVES = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];

function uleb(value: number): number[] {
  const bytes: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    bytes.push(byte);
  } while (value !== 0);
  return bytes;
}

function sleb(value: number): number[] {
  const bytes: number[] = [];
  for (;;) {
    const byte = value & 0x7f;
    value >>= 7;
    const done = (value === 0 && (byte & 0x40) === 0) || (value === -1 && (byte & 0x40) !== 0);
    bytes.push(done ? byte : byte | 0x80);
    if (done) return bytes;
  }
}

function vector(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function name(text: string): number[] {
  return [...uleb(text.length), ...Buffer.from(text, 'ascii')];
}

/** Loops `body` while local `pointer` is below local `end`. */
function whileBelow(pointer: number, end: number, body: number[]): number[] {
  return [...op.block, ...op.loop, ...op.get(pointer), ...op.get(end), ...op.i32GeU, ...op.brIf(1), ...body, ...op.br(0), ...op.end, ...op.end];
}

function advance(local: number, bytes: number): number[] {
  return [...op.get(local), ...op.i32Const(bytes), ...op.i32Add, ...op.set(local)];
}

/** Sets local `end` to `start + (n & mask) * 4`, the byte end of the float32 values a loop visits. */
function setEnd(end: number, start: number, n: number, mask: number): number[] {
  return [...op.get(start), ...op.get(n), ...op.i32Const(mask), ...op.i32And, ...op.i32Const(2), ...op.i32Shl, ...op.i32Add, ...op.set(end)];
}

/**
 * Body of `foldMany` (divide = false) or `foldManyDivide` (divide = true),
 * which add several float32 tiles to one stretch of the sum. Each group of
 * eight sums stays in registers while every update of the table is added to
 * it in table order. So a value goes through exactly the additions of one fold
 * per update in that order, and the sum is read and written once per batch
 * instead of once per update. `foldManyDivide` writes f32(sum / d) to `dst`
 * in place of the sum, which it leaves as it was.
 */
function foldManyBody(divide: boolean): number[] {
  // Parameters: 0 sum, 1 table, 2 count, 3 n, 4 overwrite, 5 dst, 6 d. The
  // table contains `count` entries of 16 bytes: the i32 address of a float32
  // tile, 4 bytes of padding and its f64 weight. Locals are numbered from
  // zero, parameters first: 7 table end, 8 entry, 9 byte offset into the
  // tiles, 10 loop end, 11 source address, 12-15 four f64x2 sums, 16-17 eight
  // source values, 18 the weight in both lanes, 19 a zero vector, 20 d in both
  // lanes, 21 a scalar sum and 22 a zero scalar.
  const [sum, table, count, n, overwrite, dst, d] = [0, 1, 2, 3, 4, 5, 6];
  const [tableEnd, entry, off, end, src] = [7, 8, 9, 10, 11];
  const sums = [12, 13, 14, 15];
  const sources = [16, 17];
  const [wv, zeroVector, dv, scalarSum, zero] = [18, 19, 20, 21, 22];
  const startFrom = (local: number, type: number, load: number[]) => [
    ...op.get(overwrite),
    ...op.if(type),
    ...op.get(type === V128 ? zeroVector : zero),
    ...op.else,
    ...op.get(sum),
    ...load,
    ...op.end,
    ...op.set(local),
  ];
  const addProduct = (local: number, promoted: number[]) => [...op.get(local), ...promoted, ...op.get(wv), ...f64x2Mul, ...f64x2Add, ...op.set(local)];
  const promoteLow = (x: number) => [...op.get(x), ...f64x2PromoteLowF32x4];
  const promoteHigh = (x: number) => [...op.get(x), ...op.get(x), ...i8x16Shuffle(HIGH_HALF), ...f64x2PromoteLowF32x4];
  // Eight values per step, in four independent f64x2 sums, so that the
  // additions of consecutive updates overlap in the pipeline.
  const vectorUpdates = whileBelow(entry, tableEnd, [
    ...op.get(entry),
    ...op.i32Load(0),
    ...op.get(off),
    ...op.i32Add,
    ...op.set(src),
    ...sources.flatMap((x, i) => [...op.get(src), ...v128Load(16 * i), ...op.set(x)]),
    ...op.get(entry),
    ...op.f64Load(8),
    ...f64x2Splat,
    ...op.set(wv),
    ...sources.flatMap((x, i) => [...addProduct(sums[2 * i], promoteLow(x)), ...addProduct(sums[2 * i + 1], promoteHigh(x))]),
    ...advance(entry, 16),
  ]);
  // Divides four f64x2 sums by d and stores them as eight float32 values at dst + off.
  const quotient = (local: number) => [...op.get(local), ...op.get(dv), ...f64x2Div, ...f32x4DemoteF64x2Zero];
  const storeQuotients = () =>
    [0, 1].flatMap((half) => [
      ...op.get(dst),
      ...op.get(off),
      ...op.i32Add,
      ...quotient(sums[2 * half]),
      ...quotient(sums[2 * half + 1]),
      ...i8x16Shuffle(LOW_HALVES),
      ...v128Store(16 * half),
    ]);
  const vectorLoop = whileBelow(off, end, [
    ...sums.flatMap((local, i) => startFrom(local, V128, v128Load(16 * i))),
    ...op.get(table),
    ...op.set(entry),
    ...vectorUpdates,
    ...(divide ? storeQuotients() : sums.flatMap((local, i) => [...op.get(sum), ...op.get(local), ...v128Store(16 * i)])),
    ...advance(off, 32),
    ...advance(sum, 64),
  ]);
  const scalarUpdates = whileBelow(entry, tableEnd, [
    ...op.get(scalarSum),
    ...op.get(entry),
    ...op.i32Load(0),
    ...op.get(off),
    ...op.i32Add,
    ...op.f32Load(0),
    ...op.f64PromoteF32,
    ...op.get(entry),
    ...op.f64Load(8),
    ...op.f64Mul,
    ...op.f64Add,
    ...op.set(scalarSum),
    ...advance(entry, 16),
  ]);
  const storeScalar = divide
    ? [...op.get(dst), ...op.get(off), ...op.i32Add, ...op.get(scalarSum), ...op.get(d), ...op.f64Div, ...op.f32DemoteF64, ...op.f32Store(0)]
    : [...op.get(sum), ...op.get(scalarSum), ...op.f64Store(0)];
  const scalarLoop = whileBelow(off, end, [
    ...startFrom(scalarSum, F64, op.f64Load(0)),
    ...op.get(table),
    ...op.set(entry),
    ...scalarUpdates,
    ...storeScalar,
    ...advance(off, 4),
    ...advance(sum, 8),
  ]);
  return [
    ...[3, 5, I32, 9, V128, 2, F64],
    ...op.get(d),
    ...f64x2Splat,
    ...op.set(dv),
    ...op.get(table),
    ...op.get(count),
    ...op.i32Const(4),
    ...op.i32Shl,
    ...op.i32Add,
    ...op.set(tableEnd),
    ...op.get(n),
    ...op.i32Const(-8),
    ...op.i32And,
    ...op.i32Const(2),
    ...op.i32Shl,
    ...op.set(end),
    ...vectorLoop,
    // The last n % 8 values, one at a time.
    ...op.get(n),
    ...op.i32Const(2),
    ...op.i32Shl,
    ...op.set(end),
    ...scalarLoop,
    ...op.end,
  ];
}

function divideBody(): number[] {
  // Parameters: 0 sum, 1 dst, 2 n, 3 d. Locals: 4 end, 5 d in both lanes.
  const [sum, dst, n, d, end, dv] = [0, 1, 2, 3, 4, 5];
  const vectorLoop = whileBelow(dst, end, [
    ...op.get(dst),
    ...op.get(sum),
    ...v128Load(0),
    ...op.get(dv),
    ...f64x2Div,
    ...f32x4DemoteF64x2Zero,
    ...op.get(sum),
    ...v128Load(16),
    ...op.get(dv),
    ...f64x2Div,
    ...f32x4DemoteF64x2Zero,
    ...i8x16Shuffle(LOW_HALVES),
    ...v128Store(0),
    ...advance(dst, 16),
    ...advance(sum, 32),
  ]);
  const scalarLoop = whileBelow(dst, end, [
    ...op.get(dst),
    ...op.get(sum),
    ...op.f64Load(0),
    ...op.get(d),
    ...op.f64Div,
    ...op.f32DemoteF64,
    ...op.f32Store(0),
    ...advance(dst, 4),
    ...advance(sum, 8),
  ]);
  return [
    ...[2, 1, I32, 1, V128],
    ...op.get(d),
    ...f64x2Splat,
    ...op.set(dv),
    ...setEnd(end, dst, n, -4),
    ...vectorLoop,
    ...setEnd(end, end, n, 3),
    ...scalarLoop,
    ...op.end,
  ];
}

/** Returns the bytes of the module: it imports `env.memory` and exports `foldMany`, `foldManyDivide` and `divide`. */
export function kernelModuleBytes(): Uint8Array {
  const foldManyType = [0x60, ...vector([[I32], [I32], [I32], [I32], [I32], [I32], [F64]]), 0];
  const divideType = [0x60, ...vector([[I32], [I32], [I32], [F64]]), 0];
  const memoryImport = [...name('env'), ...name('memory'), 0x02, 0x00, 0x01];
  const bodies = [foldManyBody(false), foldManyBody(true), divideBody()].map((body) => [...uleb(body.length), ...body]);
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vector([foldManyType, divideType])),
    ...section(2, vector([memoryImport])),
    ...section(3, vector([[0], [0], [1]])),
    ...section(7, vector([[...name('foldMany'), 0x00, 0], [...name('foldManyDivide'), 0x00, 1], [...name('divide'), 0x00, 2]])),
    ...section(10, vector(bodies)),
  ]);
}

interface KernelExports {
  foldMany(sum: number, table: number, count: number, n: number, overwrite: number, dst: number, d: number): void;
  foldManyDivide(sum: number, table: number, count: number, n: number, overwrite: number, dst: number, d: number): void;
  divide(sum: number, dst: number, n: number, d: number): void;
}

/** Updates folded by one `foldMany` call; a larger batch is folded in several calls. */
export const BATCH_SLOTS = 8;
/**
 * Float32 values of one update in a tile: 64 KiB. The tiles of a batch of six
 * take 384 KiB, so they stay in a 512 KiB L2 cache between being read in and
 * being folded. On the 2-core AMD EPYC of bench/README.md, 8 K values per
 * tile were slower (more read calls) and 32 K no faster.
 */
export const TILE_VALUES = 16_384;
const TILE_BYTES = TILE_VALUES * 4;
const TABLE_ENTRY_BYTES = 16;
const PAGE_BYTES = 65_536;
// The tiles of the batch, the quotient tile of `foldTilesDivided` and the table.
const RESERVED_BYTES = (BATCH_SLOTS + 1) * TILE_BYTES + BATCH_SLOTS * TABLE_ENTRY_BYTES;
/** Largest sum the kernel takes, in float64 values: 2 GiB of wasm memory minus the tiles and the table. */
export const SIMD_SUM_MAX_VALUES = Math.floor((2 ** 31 - RESERVED_BYTES) / 8);

// The WebAssembly API that Node provides; the project's TypeScript libraries
// (ES2022 and @types/node) declare only its types, not the global object.
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
  Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let compiled: object | null = null;

/**
 * A float64 sum of `length` values in WebAssembly memory, updated with the
 * SIMD kernels. Float32 input is first written into one of BATCH_SLOTS tiles
 * (see `tile`), because wasm code reads only its own memory.
 */
export class SimdSum {
  private readonly kernel: KernelExports;
  private readonly memory: { buffer: ArrayBuffer };
  private readonly tilesAddress: number;
  private readonly tableAddress: number;
  private readonly quotientAddress: number;
  private readonly quotients: Float32Array;
  private readonly weights: Float64Array;
  private readonly tiles: Float32Array[];
  private readonly output: Float32Array;
  /** The float64 sum at the start of wasm memory, which the native fold reads and writes in place. */
  readonly values: Float64Array;

  /** @throws RangeError when `length` is above SIMD_SUM_MAX_VALUES. */
  constructor(readonly length: number) {
    if (length > SIMD_SUM_MAX_VALUES) throw new RangeError(`a SIMD sum holds at most ${SIMD_SUM_MAX_VALUES} values, not ${length}`);
    compiled ??= new wasm.Module(kernelModuleBytes());
    this.tilesAddress = Math.ceil((length * 8) / 16) * 16;
    this.quotientAddress = this.tilesAddress + BATCH_SLOTS * TILE_BYTES;
    this.tableAddress = this.quotientAddress + TILE_BYTES;
    this.memory = new wasm.Memory({ initial: Math.ceil((this.tableAddress + BATCH_SLOTS * TABLE_ENTRY_BYTES) / PAGE_BYTES) });
    this.kernel = new wasm.Instance(compiled, { env: { memory: this.memory } }).exports as unknown as KernelExports;
    this.values = new Float64Array(this.memory.buffer, 0, length);
    const addresses = new Int32Array(this.memory.buffer, this.tableAddress, BATCH_SLOTS * 4);
    this.weights = new Float64Array(this.memory.buffer, this.tableAddress, BATCH_SLOTS * 2);
    this.tiles = [];
    for (let slot = 0; slot < BATCH_SLOTS; slot++) {
      addresses[slot * 4] = this.tilesAddress + slot * TILE_BYTES;
      this.tiles.push(new Float32Array(this.memory.buffer, this.tilesAddress + slot * TILE_BYTES, TILE_VALUES));
    }
    this.quotients = new Float32Array(this.memory.buffer, this.quotientAddress, TILE_VALUES);
    // `divideInto` writes its float32 output over all the tiles at once.
    this.output = new Float32Array(this.memory.buffer, this.tilesAddress, BATCH_SLOTS * TILE_VALUES);
  }

  /** Float32 tile of `slot` in wasm memory; `foldTiles` reads its first `count` values. */
  tile(slot: number): Float32Array {
    return this.tiles[slot];
  }

  /** Sets the weights of the tiles of slots 0 to weights.length - 1 for the next `foldTiles` calls. */
  setWeights(weights: readonly number[]): void {
    if (weights.length > BATCH_SLOTS) throw new RangeError(`a batch has at most ${BATCH_SLOTS} updates, not ${weights.length}: fold it in several batches`);
    weights.forEach((weight, slot) => (this.weights[slot * 2 + 1] = weight));
  }

  /**
   * Adds `weight_j * tile_j[i]` for the first `slots` tiles in slot order to
   * the `count` values from `offset` on, or with `overwrite` replaces those
   * values by that sum started from zero.
   */
  foldTiles(offset: number, count: number, slots: number, overwrite: boolean): void {
    this.kernel.foldMany(offset * 8, this.tableAddress, slots, count, overwrite ? 1 : 0, 0, 1);
  }

  /**
   * Computes what `foldTiles` would, but writes the sums divided by `divisor`
   * as float32 into `quotients` (see `quotientTile`) and leaves the sum as it was.
   */
  foldTilesDivided(offset: number, count: number, slots: number, overwrite: boolean, divisor: number): void {
    this.kernel.foldManyDivide(offset * 8, this.tableAddress, slots, count, overwrite ? 1 : 0, this.quotientAddress, divisor);
  }

  /** Float32 tile that `foldTilesDivided` writes. */
  get quotientTile(): Float32Array {
    return this.quotients;
  }

  /** Writes the values from `offset` on, divided by `divisor`, into `out` as float32. */
  divideInto(offset: number, out: Float32Array, divisor: number): void {
    const chunk = this.output.length;
    for (let start = 0; start < out.length; start += chunk) {
      const count = Math.min(chunk, out.length - start);
      this.kernel.divide((offset + start) * 8, this.tilesAddress, count, divisor);
      out.set(count === chunk ? this.output : this.output.subarray(0, count), start);
    }
  }
}
