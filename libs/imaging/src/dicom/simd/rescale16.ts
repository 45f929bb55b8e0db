import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Pixel description and rescale of one frame of 16-bit samples, as the SIMD kernel takes them. */
export interface Rescale16Parameters {
  bitsStored: number;
  signed: boolean;
  slope: number;
  intercept: number;
  /** Inclusive range of stored values that are padding, or undefined when there is none. */
  padding?: { low: number; high: number; value: number };
}

// The project compiles without the DOM library, which is where TypeScript declares
// WebAssembly, so this file declares the little of it that it uses.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: object };
}

interface KernelExports {
  memory: WasmMemory;
  rescale16(input: number, output: number, count: number, bitsStored: number, signed: number, slope: number, intercept: number, padLow: number, padHigh: number, padValue: number): void;
}

const PAGE_BYTES = 65536;
// Largest magnitude for which every float32 product and sum of integers is exact.
const FLOAT32_EXACT_INTEGER = 2 ** 24;

let kernel: KernelExports | undefined;

// The module is compiled once per thread, on first use. Node 20, the oldest runtime the
// project supports, has WebAssembly SIMD, so a failure here is an error, not a fallback.
function loadKernel(): KernelExports {
  if (kernel === undefined) {
    const bytes = readFileSync(join(__dirname, 'rescale16.wasm'));
    const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
    kernel = new wasm.Instance(new wasm.Module(bytes)).exports as KernelExports;
  }
  return kernel;
}

/**
 * Tells whether float32 arithmetic gives exactly the float64 result rounded to float32 for
 * these parameters: integer slope and intercept, and every v * slope + intercept below 2^24
 * in magnitude. CT files nearly always qualify (slope 1, intercept -1024).
 */
export function isExactInFloat32(parameters: Rescale16Parameters): boolean {
  const { bitsStored, signed, slope, intercept } = parameters;
  if (!Number.isInteger(slope) || !Number.isInteger(intercept)) return false;
  const largestSample = signed ? 2 ** (bitsStored - 1) : 2 ** bitsStored - 1;
  const largestProduct = largestSample * Math.abs(slope);
  return largestProduct < FLOAT32_EXACT_INTEGER && largestProduct + Math.abs(intercept) < FLOAT32_EXACT_INTEGER;
}

/**
 * Converts `count` little-endian 16-bit samples to Hounsfield units in `target` with the
 * WebAssembly SIMD kernel. Returns false, writing nothing, when float32 arithmetic would not
 * be exact for these parameters, so that the caller takes the scalar path.
 */
export function rescale16Simd(samples: Uint8Array, count: number, parameters: Rescale16Parameters, target: Float32Array): boolean {
  if (!isExactInFloat32(parameters)) return false;
  const exports = loadKernel();

  // Input at 0, output after it; the input is rounded up to whole 8-sample vectors.
  const inputBytes = Math.ceil(count / 8) * 16;
  const outputStart = inputBytes;
  const needed = outputStart + inputBytes * 2;
  const memory = exports.memory;
  if (memory.buffer.byteLength < needed) memory.grow(Math.ceil((needed - memory.buffer.byteLength) / PAGE_BYTES));

  new Uint8Array(memory.buffer, 0, count * 2).set(samples.subarray(0, count * 2));
  const padding = parameters.padding;
  exports.rescale16(
    0,
    outputStart,
    count,
    parameters.bitsStored,
    parameters.signed ? 1 : 0,
    parameters.slope,
    parameters.intercept,
    // An empty range, low above high, when the frame has no padding.
    padding?.low ?? 1,
    padding?.high ?? 0,
    padding?.value ?? 0,
  );
  target.set(new Float32Array(memory.buffer, outputStart, count));
  return true;
}
