import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadNativeKernels } from '@covnet/native-kernels';
import { describe, expect, it } from 'vitest';

const MODEL = path.join(__dirname, '..', 'src', 'index.ts');

/** Runs initBackend on wasm in a child process with COVNET_NATIVE_KERNELS set to `value`. */
function backendWith(value: string): { reason: string; convolutions: { kind: string; instructions?: string; reason?: string } } {
  const script = `require(${JSON.stringify(MODEL)}).initBackend({ prefer: 'wasm' }).then((c) => console.log(JSON.stringify({ reason: c.reason, convolutions: c.convolutions })));`;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8', env: { ...process.env, COVNET_NATIVE_KERNELS: value }, timeout: 60_000 });
  expect(child.status, child.stderr).toBe(0);
  return JSON.parse(child.stdout.trim().split('\n').pop()!) as ReturnType<typeof backendWith>;
}

// Read from /proc/cpuinfo, independently of the addon's own check.
const hasAvx512 = /\bavx512f\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));

describe.runIf(loadNativeKernels().kernels !== null)('COVNET_NATIVE_KERNELS', () => {
  describe('when unset', () => {
    it('names the widest convolutions', () => {
      const choice = backendWith('');
      expect(choice.convolutions).toEqual({ kind: 'native-avx2', instructions: hasAvx512 ? 'avx512' : 'avx2' });
      expect(choice.reason).toContain(`Convolutions run on the native kernels with ${hasAvx512 ? 'AVX-512' : 'AVX2'}.`);
    });
  });

  describe('when avx2', () => {
    it('names AVX2 convolutions', () => {
      const choice = backendWith('avx2');
      expect(choice.convolutions).toEqual({ kind: 'native-avx2', instructions: 'avx2' });
      expect(choice.reason).toContain('Convolutions run on the native kernels with AVX2.');
    });
  });

  describe('when 0', () => {
    it('names the wasm kernels and why', () => {
      const choice = backendWith('0');
      expect(choice.convolutions).toEqual({ kind: 'wasm', reason: 'COVNET_NATIVE_KERNELS=0 turns them off' });
      expect(choice.reason).toContain("Convolutions run on wasm's XNNPACK, several times slower, because the native kernels are unavailable: COVNET_NATIVE_KERNELS=0 turns them off");
    });
  });

  describe('when neither 0 nor avx2', () => {
    // Taking 'off' or 'AVX2' as the default would run AVX-512 kernels against the value's evident intent.
    it.each(['off', 'AVX2', 'false'])('names the invalid value %s', (value) => {
      const choice = backendWith(value);
      const reason = `COVNET_NATIVE_KERNELS is '${value}', which is invalid: set it to 0 to turn the native kernels off, to avx2 to keep their convolutions on AVX2, or leave it unset`;
      expect(choice.convolutions).toEqual({ kind: 'wasm', reason });
      expect(choice.reason).toContain(reason);
    });
  });
});
