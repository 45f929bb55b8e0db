import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const PACKAGE = path.resolve(__dirname, '..');
const BUILT = path.join(PACKAGE, 'build', 'covnet_kernels.node');
const temporary: string[] = [];

/** Copies build.cjs, src/ and, when given, build/ files into a fresh package folder. */
function copyPackage(buildFiles: Record<string, Buffer | string> = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'native-kernels-'));
  temporary.push(dir);
  copyFileSync(path.join(PACKAGE, 'build.cjs'), path.join(dir, 'build.cjs'));
  cpSync(path.join(PACKAGE, 'src'), path.join(dir, 'src'), { recursive: true });
  for (const [name, content] of Object.entries(buildFiles)) {
    const file = path.join(dir, 'build', name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, content);
  }
  return dir;
}

/** Loads the copy's index.ts in a child process, so a crash cannot take the test runner down. */
function reasonOf(dir: string): { status: number | null; signal: string | null; reason: string } {
  const script = `const r = require(${JSON.stringify(path.join(dir, 'src', 'index.ts'))}).loadNativeKernels(); console.log(r.kernels === null ? r.reason : 'loaded');`;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8', env: { ...process.env, COVNET_NATIVE_KERNELS: '' } });
  return { status: child.status, signal: child.signal, reason: child.stdout.trim() };
}

afterEach(() => {
  for (const dir of temporary.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('native kernels install', () => {
  it('failed build names compiler error', () => {
    const dir = copyPackage({ 'covnet_kernels.node': 'an addon from an earlier build' });
    const compiler = path.join(dir, 'failing-compiler');
    writeFileSync(compiler, '#!/bin/sh\necho "note: compiling" >&2\necho "src/conv-avx2.cc:1:1: error: no such intrinsic" >&2\nexit 1\n');
    chmodSync(compiler, 0o755);
    const build = spawnSync(process.execPath, [path.join(dir, 'build.cjs')], { encoding: 'utf8', env: { ...process.env, CXX: compiler } });
    expect(build.status).toBe(0);
    // The earlier addon is gone, so nothing built from other sources is loaded.
    expect(existsSync(path.join(dir, 'build', 'covnet_kernels.node'))).toBe(false);
    const loaded = reasonOf(dir);
    expect(loaded.status).toBe(0);
    expect(loaded.reason).toContain('error: no such intrinsic');
  });

  it.runIf(existsSync(BUILT))('truncated addon gives a reason', () => {
    const bytes = readFileSync(BUILT);
    const stamp = readFileSync(path.join(PACKAGE, 'build', 'covnet_kernels.stamp.json'));
    const dir = copyPackage({ 'covnet_kernels.node': bytes.subarray(0, 4000), 'covnet_kernels.stamp.json': stamp });
    const loaded = reasonOf(dir);
    expect(loaded.signal).toBeNull();
    expect(loaded.reason).toMatch(/is 4000 bytes, but the build wrote \d+/);
  });

  it.runIf(existsSync(BUILT))('intact copy loads', () => {
    const dir = copyPackage({ 'covnet_kernels.node': readFileSync(BUILT), 'covnet_kernels.stamp.json': readFileSync(path.join(PACKAGE, 'build', 'covnet_kernels.stamp.json')) });
    expect(reasonOf(dir).reason).toMatch(/^loaded$|AVX2/);
  });
});
