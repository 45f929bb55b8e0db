/**
 * WebAssembly SIMD kernels of the FedAvg running sum, emitted as bytes here
 * so that no assembler or binary file is needed:
 *
 *   fold(sum, src, n, w):      sum[i] += w * f64(src[i])     for i < n
 *   store(sum, src, n, w):     sum[i]  = 0 + w * f64(src[i])
 *   divide(sum, dst, n, d):    dst[i]  = f32(sum[i] / d)     for i < n
 *
 * `sum` points to float64 values and `src`, `dst` to float32 values, all in
 * the instance's memory. Each lane performs the same IEEE operations as the
 * scalar JavaScript loop `sum[i] += w * data[i]` (promote, multiply, add, with
 * no fused multiply-add), so both give bit-identical sums.
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
 * Body of `fold` (accumulate = true) or of `store` (accumulate = false), which
 * writes 0 + w * src[i] and so needs neither a zeroed sum nor a read of it.
 */
function foldBody(accumulate: boolean): number[] {
  // Parameters: 0 sum, 1 src, 2 n, 3 w. Locals: 4 end, 5 w in both lanes,
  // 6 four source values, 7 a zero vector and 8 a zero scalar (locals start at zero).
  const [sum, src, n, w, end, wv, x, zeroVector, zero] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const foldPair = (sumOffset: number, promoted: number[]) => [
    ...op.get(sum),
    ...(accumulate ? [...op.get(sum), ...v128Load(sumOffset)] : op.get(zeroVector)),
    ...promoted,
    ...op.get(wv),
    ...f64x2Mul,
    ...f64x2Add,
    ...v128Store(sumOffset),
  ];
  const vectorLoop = whileBelow(src, end, [
    ...op.get(src),
    ...v128Load(0),
    ...op.set(x),
    ...foldPair(0, [...op.get(x), ...f64x2PromoteLowF32x4]),
    ...foldPair(16, [...op.get(x), ...op.get(x), ...i8x16Shuffle(HIGH_HALF), ...f64x2PromoteLowF32x4]),
    ...advance(src, 16),
    ...advance(sum, 32),
  ]);
  const scalarLoop = whileBelow(src, end, [
    ...op.get(sum),
    ...(accumulate ? [...op.get(sum), ...op.f64Load(0)] : op.get(zero)),
    ...op.get(src),
    ...op.f32Load(0),
    ...op.f64PromoteF32,
    ...op.get(w),
    ...op.f64Mul,
    ...op.f64Add,
    ...op.f64Store(0),
    ...advance(src, 4),
    ...advance(sum, 8),
  ]);
  return [
    ...[3, 1, I32, 3, V128, 1, F64],
    ...op.get(w),
    ...f64x2Splat,
    ...op.set(wv),
    ...setEnd(end, src, n, -4),
    ...vectorLoop,
    // The last n % 4 values, one at a time.
    ...setEnd(end, end, n, 3),
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

/** Returns the bytes of the module: it imports `env.memory` and exports `fold`, `store` and `divide`. */
export function kernelModuleBytes(): Uint8Array {
  const kernelType = [0x60, ...vector([[I32], [I32], [I32], [F64]]), 0];
  const memoryImport = [...name('env'), ...name('memory'), 0x02, 0x00, 0x01];
  const bodies = [foldBody(true), foldBody(false), divideBody()].map((body) => [...uleb(body.length), ...body]);
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vector([kernelType])),
    ...section(2, vector([memoryImport])),
    ...section(3, vector([[0], [0], [0]])),
    ...section(7, vector([[...name('fold'), 0x00, 0], [...name('store'), 0x00, 1], [...name('divide'), 0x00, 2]])),
    ...section(10, vector(bodies)),
  ]);
}

interface KernelExports {
  fold(sum: number, src: number, n: number, w: number): void;
  store(sum: number, src: number, n: number, w: number): void;
  divide(sum: number, dst: number, n: number, d: number): void;
}

// Float32 values copied per kernel call. 64 KiB stays in the L2 cache, so the
// copy into wasm memory is read again from cache, not from main memory.
const SCRATCH_VALUES = 16_384;
const PAGE_BYTES = 65_536;
/** Largest sum the kernel takes, in float64 values: 2 GiB of wasm memory minus the scratch area. */
export const SIMD_SUM_MAX_VALUES = Math.floor((2 ** 31 - SCRATCH_VALUES * 4) / 8);

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
 * SIMD kernels. Float32 input is copied through a small scratch area, because
 * wasm code reads only its own memory.
 */
export class SimdSum {
  private readonly kernel: KernelExports;
  private readonly scratch: Float32Array;
  private readonly scratchAddress: number;

  /** @throws RangeError when `length` is above SIMD_SUM_MAX_VALUES. */
  constructor(readonly length: number) {
    if (length > SIMD_SUM_MAX_VALUES) throw new RangeError(`a SIMD sum holds at most ${SIMD_SUM_MAX_VALUES} values, not ${length}`);
    compiled ??= new wasm.Module(kernelModuleBytes());
    this.scratchAddress = Math.ceil((length * 8) / 16) * 16;
    const memory = new wasm.Memory({ initial: Math.ceil((this.scratchAddress + SCRATCH_VALUES * 4) / PAGE_BYTES) });
    this.kernel = new wasm.Instance(compiled, { env: { memory } }).exports as unknown as KernelExports;
    this.scratch = new Float32Array(memory.buffer, this.scratchAddress, SCRATCH_VALUES);
  }

  /**
   * Adds `weight * data` to the values from `offset` on, or with `overwrite`
   * replaces them by it.
   */
  addScaled(offset: number, data: Float32Array, weight: number, overwrite: boolean): void {
    const kernel = overwrite ? this.kernel.store : this.kernel.fold;
    for (let start = 0; start < data.length; start += SCRATCH_VALUES) {
      const part = data.subarray(start, Math.min(start + SCRATCH_VALUES, data.length));
      this.scratch.set(part);
      kernel((offset + start) * 8, this.scratchAddress, part.length, weight);
    }
  }

  /** Writes the values from `offset` on, divided by `divisor`, into `out` as float32. */
  divideInto(offset: number, out: Float32Array, divisor: number): void {
    for (let start = 0; start < out.length; start += SCRATCH_VALUES) {
      const count = Math.min(SCRATCH_VALUES, out.length - start);
      this.kernel.divide((offset + start) * 8, this.scratchAddress, count, divisor);
      out.set(count === SCRATCH_VALUES ? this.scratch : this.scratch.subarray(0, count), start);
    }
  }
}
