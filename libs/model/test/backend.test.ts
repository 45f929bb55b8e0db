import * as tf from '@tensorflow/tfjs';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BackendUnavailableError, chooseBackend, initBackend } from '../src';

function moduleNotFound(name: string): Error {
  return Object.assign(new Error(`Cannot find module '${name}'`), { code: 'MODULE_NOT_FOUND' });
}

describe('initBackend', () => {
  afterAll(async () => {
    await tf.setBackend('wasm');
  });

  describe('when the native packages are not installed', () => {
    it('falls back to wasm and records why', async () => {
      const choice = await initBackend();
      expect(choice.backend).toBe('wasm');
      expect(tf.getBackend()).toBe('wasm');
      expect(choice.attempts.map((a) => a.name)).toEqual(['tensorflow-gpu', 'tensorflow', 'wasm']);
      // Usually "Cannot find module"; a copy installed without its libtensorflow download
      // fails with a native load error instead. Either way the rung must carry a reason.
      expect(choice.attempts[0].error).toMatch(/\S/);
      expect(choice.attempts[1].error).toMatch(/\S/);
      expect(choice.attempts[2].error).toBeUndefined();
      expect(choice.reason).toMatch(/^Using wasm: tensorflow-gpu failed/);
    });

    it('returns the first choice on later calls', async () => {
      const first = await initBackend();
      const again = await initBackend({ prefer: 'cpu', allowCpuTraining: true });
      expect(again).toBe(first);
      expect(tf.getBackend()).toBe('wasm');
    });

    it('registers the wasm filter gradient kernel', () => {
      expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
    });
  });

  describe('when a native package is installed but broken', () => {
    it('reports the load error and warns', async () => {
      const warning = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
      const cudaError = 'libcudart.so.11.0: cannot open shared object file: No such file or directory';
      const load = (name: string): unknown => {
        if (name === '@tensorflow/tfjs-node-gpu') {
          throw new Error(cudaError);
        }
        throw moduleNotFound(name);
      };
      try {
        const choice = await chooseBackend({}, load);
        expect(choice.backend).toBe('wasm');
        expect(choice.attempts[0]).toEqual({ name: 'tensorflow-gpu', error: cudaError });
        expect(choice.reason).toContain(cudaError);
        expect(warning).toHaveBeenCalledTimes(1);
        expect(String(warning.mock.calls[0][0])).toContain('@tensorflow/tfjs-node-gpu is installed but failed to load');
        expect(choice.warnings).toEqual([warning.mock.calls[0][0]]);
      } finally {
        warning.mockRestore();
      }
    });
  });

  // tfjs-node-gpu cannot be installed here (its install downloads libtensorflow), so these
  // tests load a stand-in: a module whose loading registers a 'tensorflow' backend that
  // reports the device the way tfjs-node's NodeJSKernelBackend does, in isUsingGpuDevice.
  describe('when tfjs-node-gpu loads', () => {
    class NativeBackendStandIn extends tf.KernelBackend {
      readonly isGPUPackage = true;

      constructor(readonly isUsingGpuDevice: unknown) {
        super();
      }

      override dispose(): void {}
    }

    function gpuPackageLoader(isUsingGpuDevice: unknown): (name: string) => unknown {
      return vi.fn((name: string) => {
        if (name !== '@tensorflow/tfjs-node-gpu') {
          throw moduleNotFound(name);
        }
        tf.registerBackend('tensorflow', () => new NativeBackendStandIn(isUsingGpuDevice));
        return {};
      });
    }

    let warning: ReturnType<typeof vi.spyOn>;
    beforeEach(() => {
      warning = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    });
    afterEach(async () => {
      warning.mockRestore();
      await tf.setBackend('wasm');
      tf.removeBackend('tensorflow');
    });

    describe('and TensorFlow uses a GPU', () => {
      it('chooses the GPU rung quietly', async () => {
        const choice = await chooseBackend({}, gpuPackageLoader(true));
        expect(choice.rung).toBe('tensorflow-gpu');
        expect(choice.backend).toBe('tensorflow');
        expect(tf.getBackend()).toBe('tensorflow');
        expect(choice.attempts).toEqual([{ name: 'tensorflow-gpu' }]);
        expect(choice.warnings).toEqual([]);
        expect(warning).not.toHaveBeenCalled();
      });
    });

    describe('and TensorFlow found no GPU device', () => {
      it('falls to the tensorflow rung and warns', async () => {
        const load = gpuPackageLoader(false);
        const choice = await chooseBackend({}, load);
        expect(choice.rung).toBe('tensorflow');
        expect(choice.backend).toBe('tensorflow');
        expect(tf.getBackend()).toBe('tensorflow');
        // tfjs-node is not loaded on top: the GPU package's TensorFlow already runs on the CPU.
        expect(load).toHaveBeenCalledTimes(1);
        expect(choice.attempts).toHaveLength(2);
        expect(choice.attempts[0].name).toBe('tensorflow-gpu');
        expect(choice.attempts[0].error).toMatch(/^TensorFlow found no GPU device \(.*libcudnn/);
        expect(choice.attempts[1]).toEqual({ name: 'tensorflow' });
        expect(choice.reason).toMatch(/^Using tensorflow: tensorflow-gpu failed \(TensorFlow found no GPU device/);
        expect(choice.reason).toContain('runs on the CPU');
        expect(choice.warnings).toHaveLength(1);
        expect(choice.warnings[0]).toMatch(/^@tensorflow\/tfjs-node-gpu loaded, but TensorFlow found no GPU device/);
        expect(warning).toHaveBeenCalledTimes(1);
        expect(warning.mock.calls[0]).toEqual([choice.warnings[0], 'BackendWarning']);
      });
    });

    describe('and its backend does not report the device', () => {
      it('keeps the GPU rung and warns', async () => {
        const choice = await chooseBackend({}, gpuPackageLoader(undefined));
        expect(choice.rung).toBe('tensorflow-gpu');
        expect(choice.warnings).toHaveLength(1);
        expect(choice.warnings[0]).toContain('does not report whether TensorFlow found a GPU');
        expect(warning).toHaveBeenCalledTimes(1);
      });
    });
  });

  describe('when a rung is preferred', () => {
    it('skips the rungs above it', async () => {
      const load = vi.fn();
      const choice = await chooseBackend({ prefer: 'wasm' }, load);
      expect(load).not.toHaveBeenCalled();
      expect(choice.attempts).toEqual([{ name: 'wasm' }]);
      expect(choice.reason).toMatch(/^Using wasm: skipped tensorflow-gpu, tensorflow by preference\. Convolutions run on /);
      // The log line names which convolution code runs, and why when it is not the native one.
      if (choice.convolutions?.kind === 'native-avx2') {
        expect(choice.reason).toContain(`native kernels with ${choice.convolutions.instructions === 'avx512' ? 'AVX-512' : 'AVX2'}`);
      } else {
        expect(choice.reason).toContain(`unavailable: ${choice.convolutions?.reason}`);
      }
    });

    it('rejects cpu without allowCpuTraining', async () => {
      const attempt = chooseBackend({ prefer: 'cpu' }, vi.fn());
      await expect(attempt).rejects.toBeInstanceOf(BackendUnavailableError);
      await expect(attempt).rejects.toThrow(/cpu: not allowed: pass allowCpuTraining: true/);
    });

    it('accepts cpu with allowCpuTraining', async () => {
      const choice = await chooseBackend({ prefer: 'cpu', allowCpuTraining: true }, vi.fn());
      expect(choice.backend).toBe('cpu');
      expect(tf.getBackend()).toBe('cpu');
      expect(choice.reason).toMatch(/Training on cpu is very slow/);
    });
  });
});
