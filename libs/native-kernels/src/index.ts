import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * One update of `fedAvgFold`: its tensors in layout order in memory, or a stored weight file
 * open as `descriptor` whose tensor k starts at byte `byteOffsets[k]`, with float32
 * (`bytesPerValue` 4) or float16 (2) values. `path` names the file in errors.
 */
export type NativeFoldSource =
  | { weight: number; tensors: Float32Array[] }
  | { weight: number; descriptor: number; path: string; bytesPerValue: 2 | 4; byteOffsets: Float64Array };

/**
 * The kernels of build/covnet_kernels.node: convolutions, batch normalisation, the max-pool gradient, Adam and the FedAvg fold. Each reads and writes the given
 * Float32Arrays in place (NHWC input, [kh, kw, in, out] filter) and checks their lengths
 * against `shape`: [n, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels,
 * filterHeight, filterWidth, strideHeight, strideWidth, padTop, padLeft].
 */
export interface NativeKernels {
  conv2dForward(x: Float32Array, filter: Float32Array, bias: Float32Array | null, y: Float32Array, shape: Int32Array, activation: NativeActivation): void;
  conv2dBackpropInput(dy: Float32Array, filter: Float32Array, dx: Float32Array, shape: Int32Array): void;
  conv2dBackpropFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, shape: Int32Array): void;
  /** Batch normalisation with the batch's statistics over `rows` rows of `channels` values; writes y, mean and variance. */
  batchNormTraining(rows: number, channels: number, epsilon: number, x: Float32Array, gamma: Float32Array, beta: Float32Array, y: Float32Array, mean: Float32Array, variance: Float32Array): void;
  /** Gradients of batchNormTraining for output gradient dy; writes dx, dgamma and dbeta. */
  batchNormTrainingGrad(
    rows: number,
    channels: number,
    epsilon: number,
    dy: Float32Array,
    x: Float32Array,
    gamma: Float32Array,
    mean: Float32Array,
    variance: Float32Array,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
  ): void;
  /** Batch normalisation with fixed statistics; offset and scale may be null. */
  batchNormInference(rows: number, channels: number, epsilon: number, x: Float32Array, mean: Float32Array, variance: Float32Array, offset: Float32Array | null, scale: Float32Array | null, y: Float32Array): void;
  /**
   * Gradient of a max pool; shape is [n, inHeight, inWidth, channels, outHeight, outWidth,
   * filterHeight, filterWidth, strideHeight, strideWidth, padTop, padLeft].
   */
  maxPoolGrad(dy: Float32Array, x: Float32Array, dx: Float32Array, shape: Int32Array): void;
  /** One Adam step: writes new weights and moments; corrections are 1 - beta^t. */
  adamStep(
    w: Float32Array,
    m: Float32Array,
    v: Float32Array,
    g: Float32Array,
    wOut: Float32Array,
    mOut: Float32Array,
    vOut: Float32Array,
    rate: number,
    beta1: number,
    beta2: number,
    epsilon: number,
    correction1: number,
    correction2: number,
  ): void;
  /**
   * adamStep with the gradient float32(parts[0] + parts[1] + ...) / divisor, summed in
   * part order and rounded to float32 after each addition, and the tensor split over
   * `threads` threads.
   */
  adamStepMean(
    w: Float32Array,
    m: Float32Array,
    v: Float32Array,
    parts: readonly Float32Array[],
    divisor: number,
    wOut: Float32Array,
    mOut: Float32Array,
    vOut: Float32Array,
    rate: number,
    beta1: number,
    beta2: number,
    epsilon: number,
    correction1: number,
    correction2: number,
    threads: number,
  ): void;
  /** dx = dy * step(x), with step 1 above 0, 0 at or below 0 and NaN at NaN, as tfjs's relu gradient. */
  reluGrad(dy: Float32Array, x: Float32Array, dx: Float32Array): void;
  /** The instruction set the convolutions run on: AVX-512 where the CPU has it, else AVX2. */
  convolutionInstructions(): ConvolutionInstructions;
  /** Switches the convolutions of every thread to an instruction set. @throws Error for AVX-512 on a CPU without it. */
  useConvolutionInstructions(name: ConvolutionInstructions): void;
  /**
   * Folds updates into a float64 FedAvg sum on `threads` threads, the calling one included.
   * Per value: s = (overwrite ? 0 : sum[i]), then s = s + weight * x for each source in list
   * order, each product and sum rounded to float64 (no fused multiply-add). Writes s to `sum`,
   * or, when `outputs` is given, float32(s / divisor) to the outputs and leaves `sum` alone.
   * @param starts first value of each tensor in `sum`, followed by sum.length.
   * @param outputs one Float32Array per tensor, or null to write the sum.
   * @throws Error naming the file and byte when a stored update cannot be read or ends early.
   * The sum then contains the sources in some values only. TypeError or RangeError for invalid arguments.
   */
  fedAvgFold(sum: Float64Array, starts: Float64Array, sources: readonly NativeFoldSource[], overwrite: boolean, divisor: number, outputs: Float32Array[] | null, threads: number): void;
}

export type ConvolutionInstructions = 'avx512' | 'avx2';

/** Activation codes of conv2dForward, applied after the bias: 0 none, 1 relu. */
export const NativeActivation = { Linear: 0, Relu: 1 } as const;
export type NativeActivation = (typeof NativeActivation)[keyof typeof NativeActivation];

export type NativeKernelsLoad = { kernels: NativeKernels; reason?: undefined } | { kernels: null; reason: string };

const BUILD_DIR = path.join(__dirname, '..', 'build');

/**
 * Turns the native kernels off for a process when set to 0, to compare against or to test
 * the wasm kernels. Set to avx2, it keeps the convolutions on AVX2 on a CPU with AVX-512.
 * Any other non-empty value is invalid and also leaves the kernels off, with a reason naming it.
 */
export const DISABLE_VARIABLE = 'COVNET_NATIVE_KERNELS';

let cached: NativeKernelsLoad | undefined;

/**
 * Loads the native kernels once per thread, or returns why they cannot be used: the install
 * step did not build them (and why, from its log), the CPU lacks AVX2, FMA or F16C, or
 * COVNET_NATIVE_KERNELS is 0 or invalid.
 */
export function loadNativeKernels(): NativeKernelsLoad {
  if (cached === undefined) {
    cached = load();
  }
  return cached;
}

function load(): NativeKernelsLoad {
  const setting = process.env[DISABLE_VARIABLE] ?? '';
  if (setting === '0') {
    return { kernels: null, reason: `${DISABLE_VARIABLE}=0 turns them off` };
  }

  // The intent of a value such as 'off' or 'AVX2' is unclear, so the kernels stay off
  // and the reason, which initBackend reports, names the value.
  if (setting !== '' && setting !== 'avx2') {
    return {
      kernels: null,
      reason: `${DISABLE_VARIABLE} is '${setting}', which is invalid: set it to 0 to turn the native kernels off, to avx2 to keep their convolutions on AVX2, or leave it unset`,
    };
  }

  const addon = path.join(BUILD_DIR, 'covnet_kernels.node');
  if (!existsSync(addon)) {
    const log = path.join(BUILD_DIR, 'build-error.txt');
    const why = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n')[0] : 'the install step did not run (run `npm rebuild @covnet/native-kernels`)';
    return { kernels: null, reason: `they were not built: ${why}` };
  }
  const mismatch = stampMismatch(addon);
  if (mismatch !== null) {
    return { kernels: null, reason: `${addon} ${mismatch} (run \`npm rebuild @covnet/native-kernels\`)` };
  }

  let loaded: NativeKernels & { unsupportedReason: string | null };
  try {
    loaded = require(addon) as typeof loaded;
  } catch (err) {
    return { kernels: null, reason: `${addon} failed to load: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (loaded.unsupportedReason !== null) {
    return { kernels: null, reason: loaded.unsupportedReason };
  }

  if (setting === 'avx2') {
    loaded.useConvolutionInstructions('avx2');
  }
  return { kernels: loaded };
}

/**
 * Compares the addon with the size and SHA-256 that the build recorded, and returns what
 * differs, or null. dlopen of a truncated library kills the process with SIGBUS, which no
 * try/catch can turn into a fallback.
 */
function stampMismatch(addon: string): string | null {
  const stampFile = path.join(BUILD_DIR, 'covnet_kernels.stamp.json');
  if (!existsSync(stampFile)) {
    return `has no ${path.basename(stampFile)} from the build that wrote it`;
  }
  let stamp: { bytes?: unknown; sha256?: unknown };
  try {
    stamp = JSON.parse(readFileSync(stampFile, 'utf8')) as typeof stamp;
  } catch (err) {
    return `has an unreadable ${path.basename(stampFile)}: ${err instanceof Error ? err.message : String(err)}`;
  }
  const bytes = readFileSync(addon);
  if (bytes.length !== stamp.bytes) {
    return `is ${bytes.length} bytes, but the build wrote ${String(stamp.bytes)}: it is truncated or was replaced`;
  }
  if (createHash('sha256').update(bytes).digest('hex') !== stamp.sha256) {
    return 'differs from what the build wrote (its SHA-256 does not match): it is damaged or was replaced';
  }
  return null;
}
