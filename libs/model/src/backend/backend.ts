import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { registerWasmGradientKernels, type ConvolutionKernels } from '../kernels/register';

/** Rungs of the backend ladder, fastest first. */
export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';

export const BACKEND_LADDER: readonly BackendName[] = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

/** One rung that was tried: `error` is set when it could not be used. */
export interface BackendAttempt {
  name: BackendName;
  error?: string;
}

export interface BackendChoice {
  /** tfjs backend name now active (`tensorflow` for both native packages). */
  backend: string;
  /** Rung of the ladder that was chosen. */
  rung: BackendName;
  reason: string;
  attempts: BackendAttempt[];
  /**
   * Problems that a site admin should fix, such as an installed native package that failed
   * to load, or tfjs-node-gpu running on the CPU. Each one was also emitted as a process warning.
   */
  warnings: string[];
  /** On wasm: whether the native AVX2 kernels or wasm's own compute the convolutions. */
  convolutions?: ConvolutionKernels;
}

export interface InitBackendOptions {
  /** First rung to try; the ladder continues downwards from it. Default 'tensorflow-gpu'. */
  prefer?: BackendName;
  /**
   * Accept the plain JS cpu backend. It trains two to three orders of magnitude slower
   * than wasm, so by default reaching it is an error. Default false.
   */
  allowCpuTraining?: boolean;
}

/** Loads a module by name; swapped in tests to simulate a broken native install. */
export type ModuleLoader = (moduleName: string) => unknown;

const NATIVE_PACKAGES: Record<'tensorflow-gpu' | 'tensorflow', string> = {
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  tensorflow: '@tensorflow/tfjs-node',
};

export class BackendUnavailableError extends Error {
  constructor(
    message: string,
    readonly attempts: BackendAttempt[],
  ) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

let chosen: Promise<BackendChoice> | undefined;

/**
 * Selects the tfjs backend once per process, trying tfjs-node-gpu, tfjs-node, wasm and
 * finally cpu. Every failed rung is kept in `attempts` with its error message.
 * Later calls return the first choice and ignore their options.
 *
 * @throws BackendUnavailableError when no rung works, or when only cpu is left and
 *   `allowCpuTraining` is not true.
 */
export function initBackend(opts: InitBackendOptions = {}): Promise<BackendChoice> {
  if (chosen === undefined) {
    chosen = chooseBackend(opts, defaultLoader);
    // A failed choice is not cached, so a caller can retry, e.g. with allowCpuTraining.
    chosen.catch(() => {
      chosen = undefined;
    });
  }
  return chosen;
}

function defaultLoader(moduleName: string): unknown {
  // The name is a variable on purpose: the native packages are optional dependencies
  // and usually absent, so nothing may resolve them at type-check or bundle time.
  return require(moduleName);
}

/** Runs the ladder without caching; exported for tests that inject a module loader. */
export async function chooseBackend(opts: InitBackendOptions, load: ModuleLoader): Promise<BackendChoice> {
  const prefer = opts.prefer ?? 'tensorflow-gpu';
  const start = BACKEND_LADDER.indexOf(prefer);
  if (start < 0) {
    throw new Error(`Unknown backend '${prefer}': expected one of ${BACKEND_LADDER.join(', ')}.`);
  }
  const attempts: BackendAttempt[] = [];
  const warnings: string[] = [];
  const warn = (message: string): void => {
    warnings.push(message);
    process.emitWarning(message, 'BackendWarning');
  };
  const skipped = BACKEND_LADDER.slice(0, start);
  let gpuPackageOnCpu = false;

  for (const rung of BACKEND_LADDER.slice(start)) {
    if (rung === 'cpu' && opts.allowCpuTraining !== true) {
      attempts.push({ name: 'cpu', error: 'not allowed: pass allowCpuTraining: true to accept the cpu backend' });
      break;
    }
    if (rung === 'tensorflow' && gpuPackageOnCpu) {
      // tfjs-node-gpu is loaded and runs libtensorflow on the CPU, which is what tfjs-node
      // would give. Both register a backend named 'tensorflow', and tfjs-core keeps the first
      // registration of a name, so loading tfjs-node now would not replace it.
      attempts.push({ name: 'tensorflow' });
      const reason = `${describeChoice(rung, skipped, attempts)} The 'tensorflow' backend of ${NATIVE_PACKAGES['tensorflow-gpu']} runs on the CPU.`;
      return { backend: 'tensorflow', rung, reason, attempts, warnings };
    }
    try {
      const backend = await activate(rung, load);
      if (rung === 'tensorflow-gpu') {
        const device = nativeDevice();
        if (device === 'cpu') {
          throw new NoGpuDeviceError();
        }
        if (device === 'unknown') {
          warn(`${NATIVE_PACKAGES[rung]} loaded, but its backend does not report whether TensorFlow found a GPU (no boolean isUsingGpuDevice); training may run on the CPU.`);
        }
      }
      attempts.push({ name: rung });
      if (rung === 'wasm') {
        const convolutions = registerWasmGradientKernels();
        const how =
          convolutions.kind === 'native-avx2'
            ? ` Convolutions run on the native kernels with ${convolutions.instructions === 'avx512' ? 'AVX-512' : 'AVX2'}.`
            : ` Convolutions run on wasm's XNNPACK, several times slower, because the native kernels are unavailable: ${convolutions.reason}`;
        return { backend, rung, reason: describeChoice(rung, skipped, attempts) + how, attempts, warnings, convolutions };
      }
      return { backend, rung, reason: describeChoice(rung, skipped, attempts), attempts, warnings };
    } catch (err) {
      const message = firstLine(err instanceof Error ? err.message : String(err));
      attempts.push({ name: rung, error: message });
      if (err instanceof NoGpuDeviceError) {
        gpuPackageOnCpu = true;
        warn(`${NATIVE_PACKAGES['tensorflow-gpu']} loaded, but ${message}: using its TensorFlow on the CPU instead.`);
      } else if (rung !== 'wasm' && rung !== 'cpu' && !isModuleNotFound(err)) {
        // The package is installed but its native library failed to load (missing CUDA,
        // wrong glibc, ...). That is a broken site set-up, not an absent option, so it
        // also goes to the process warning channel.
        warn(`${NATIVE_PACKAGES[rung]} is installed but failed to load: ${message}`);
      }
    }
  }

  const summary = attempts.map((a) => `${a.name}: ${a.error ?? 'ok'}`).join('; ');
  throw new BackendUnavailableError(`No usable tfjs backend (${summary}).`, attempts);
}

async function activate(rung: BackendName, load: ModuleLoader): Promise<string> {
  switch (rung) {
    case 'tensorflow-gpu':
    case 'tensorflow': {
      load(NATIVE_PACKAGES[rung]);
      // Both native packages register their backend under the name 'tensorflow'.
      if (tf.findBackend('tensorflow') === null) {
        throw new Error(`${NATIVE_PACKAGES[rung]} loaded but did not register the 'tensorflow' backend`);
      }
      await setAndCheck('tensorflow');
      return 'tensorflow';
    }
    case 'wasm': {
      configureWasm();
      registerWasmGradientKernels();
      await setAndCheck('wasm');
      return 'wasm';
    }
    case 'cpu': {
      await setAndCheck('cpu');
      return 'cpu';
    }
  }
}

/** tfjs-node-gpu loaded, but libtensorflow registered no GPU device and computes on the CPU. */
class NoGpuDeviceError extends Error {
  constructor() {
    super(`TensorFlow found no GPU device (no CUDA device visible, or libcudart or libcudnn missing; TensorFlow's own log above names the library it could not open)`);
    this.name = 'NoGpuDeviceError';
  }
}

/**
 * Reads which device the active native backend computes on. tfjs-node's backend sets
 * `isUsingGpuDevice` when it is created, from whether libtensorflow listed a GPU device,
 * and libtensorflow lists none when no CUDA device is visible or the CUDA or cuDNN libraries
 * fail to load.
 * NOTE: this follows tfjs-node's source (NodeJSKernelBackend); it has run only against a
 * stand-in backend, because tfjs-node-gpu could not be installed where it was written.
 */
function nativeDevice(): 'gpu' | 'cpu' | 'unknown' {
  const flag = (tf.backend() as { isUsingGpuDevice?: unknown }).isUsingGpuDevice;
  if (typeof flag !== 'boolean') {
    return 'unknown';
  }
  return flag ? 'gpu' : 'cpu';
}

async function setAndCheck(name: string): Promise<void> {
  const ok = await tf.setBackend(name);
  await tf.ready();
  if (!ok || tf.getBackend() !== name) {
    throw new Error(`tf.setBackend('${name}') failed; active backend is '${tf.getBackend()}'`);
  }
}

let wasmConfigured = false;

/**
 * Points the wasm backend at the .wasm binaries shipped in node_modules. Under Node, tfjs
 * 4.22 reports WASM_HAS_MULTITHREAD_SUPPORT = false, so the single-threaded SIMD build
 * (tfjs-backend-wasm-simd.wasm) is the one loaded and wasm uses one core per process.
 * Using both cores needs one training worker per core with the gradients combined.
 */
function configureWasm(): void {
  if (wasmConfigured) {
    return;
  }
  const distDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
  // setWasmPaths takes a prefix, so the trailing separator matters.
  setWasmPaths(distDir + path.sep);
  wasmConfigured = true;
}

/** Keeps the first line: Node appends the whole require stack to MODULE_NOT_FOUND messages. */
function firstLine(message: string): string {
  return message.split('\n', 1)[0];
}

function isModuleNotFound(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'MODULE_NOT_FOUND';
}

function describeChoice(rung: BackendName, skipped: BackendName[], attempts: BackendAttempt[]): string {
  const failed = attempts.filter((a) => a.error !== undefined).map((a) => `${a.name} failed (${a.error})`);
  const parts: string[] = [];
  if (skipped.length > 0) {
    parts.push(`skipped ${skipped.join(', ')} by preference`);
  }
  parts.push(...failed);
  const context = parts.length > 0 ? `: ${parts.join('; ')}` : '';
  const warning = rung === 'cpu' ? ' Training on cpu is very slow.' : '';
  return `Using ${rung}${context}.${warning}`;
}
