import { availableParallelism } from 'node:os';
import { loadNativeKernels, type NativeFoldSource, type NativeKernels } from '@covnet/native-kernels';

/**
 * Maximum threads of the native FedAvg fold. On the 2-core machine of
 * bench/README.md, two threads folded six stored updates 1.3 to 1.6 times as
 * fast as one, because copying from the page cache and memory bandwidth bound
 * the fold. More threads were not measured.
 */
export const MAX_FOLD_THREADS = 2;

/** Kernel of a FedAvgAccumulator: native AVX2 code on threads, a WebAssembly SIMD kernel, or a JavaScript loop. */
export type FoldKernel = 'native' | 'wasm' | 'scalar';

/** The native fold of this process: the addon's kernels and the threads to fold on. */
export interface NativeFold {
  readonly kernels: NativeKernels;
  readonly threads: number;
}

let loaded: { fold: NativeFold; reason?: undefined } | { fold: null; reason: string } | undefined;

/**
 * Loads the native fold once per process, or returns why it cannot be used
 * (the addon was not built, the CPU lacks AVX2, or COVNET_NATIVE_KERNELS=0).
 */
export function loadNativeFold(): { fold: NativeFold; reason?: undefined } | { fold: null; reason: string } {
  if (loaded === undefined) {
    const native = loadNativeKernels();
    loaded = native.kernels === null ? { fold: null, reason: native.reason } : { fold: { kernels: native.kernels, threads: Math.min(MAX_FOLD_THREADS, availableParallelism()) } };
  }
  return loaded;
}

/** Returns a sentence for the startup log on how FedAvg folds updates in this process, and why. */
export function describeFoldKernel(): string {
  const native = loadNativeFold();
  if (native.fold !== null) return `FedAvg folds updates with the native AVX2 kernel on ${native.fold.threads} thread${native.fold.threads === 1 ? '' : 's'}`;
  return `FedAvg folds updates with the WebAssembly SIMD kernel on the main thread, because the native kernels are unavailable: ${native.reason}`;
}

/** An update that the native fold can read without calling `readTile`. */
export interface NativeReadable {
  /** Returns where the native fold reads the update; may open its file, which `release` closes. */
  nativeSource?(): NativeFoldSource;
}

/** Returns the native sources of a batch, or null when some update offers none. */
export function nativeSources(batch: readonly NativeReadable[]): NativeFoldSource[] | null {
  if (!batch.every((update) => update.nativeSource !== undefined)) return null;
  return batch.map((update) => update.nativeSource!());
}
