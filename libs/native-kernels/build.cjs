'use strict';
// Builds the native convolution kernels at install time with the system's C++ compiler
// and the headers that ship with Node itself (<node prefix>/include/node), so nothing is
// downloaded. The kernels are optional. When this build fails, it prints the reason and
// exits 0, and COVNet keeps training on the wasm kernels. initBackend then logs the reason.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const here = __dirname;
const outDir = path.join(here, 'build');
const target = path.join(outDir, 'covnet_kernels.node');
const reasonFile = path.join(outDir, 'build-error.txt');
// Size and SHA-256 of the addon as built. The loader compares them before dlopen, which
// kills the process with SIGBUS on a truncated library instead of throwing.
const stampFile = path.join(outDir, 'covnet_kernels.stamp.json');

function fail(reason) {
  fs.mkdirSync(outDir, { recursive: true });
  // An addon from an earlier build may come from other sources than these, with other entry
  // points, so a failed build leaves none behind.
  fs.rmSync(target, { force: true });
  fs.rmSync(stampFile, { force: true });
  fs.writeFileSync(reasonFile, `${reason}\n`);
  process.stderr.write(`@covnet/native-kernels: not built, COVNet will train on the wasm kernels only: ${reason}\n`);
  process.exit(0);
}

function run(compiler, args) {
  const result = spawnSync(compiler, args, { cwd: here, encoding: 'utf8' });
  if (result.error) {
    fail(`${compiler} could not be started: ${result.error.message}`);
  }
  if (result.status !== 0) {
    // The loader reports the first line, so it names the compiler's first error.
    const stderr = result.stderr.trim();
    const firstError = stderr.split('\n').find((line) => /error/i.test(line)) ?? stderr.split('\n')[0];
    const summary = firstError ? firstError.trim() : `exit status ${result.status}, nothing on stderr`;
    fail(`${compiler} failed: ${summary}\n${compiler} ${args.join(' ')}\n${stderr}`);
  }
}

if (process.arch !== 'x64') {
  fail(`the kernels use AVX2 and FMA, which need an x64 CPU, and this is ${process.arch}`);
}
const headers = process.env.npm_config_nodedir
  ? path.join(process.env.npm_config_nodedir, 'include', 'node')
  : path.resolve(path.dirname(process.execPath), '..', 'include', 'node');
if (!fs.existsSync(path.join(headers, 'node_api.h'))) {
  fail(`Node's headers are not in ${headers} (node_api.h is missing)`);
}
const compiler = process.env.CXX || 'c++';
fs.mkdirSync(outDir, { recursive: true });
fs.rmSync(reasonFile, { force: true });
const common = ['-std=c++17', '-fPIC', '-fvisibility=hidden', '-pthread', '-Wall', '-Wextra', `-I${headers}`];
const partial = path.join(outDir, `covnet_kernels.${process.pid}.tmp`);
// Only the kernel files are compiled for AVX2 and FMA; the entry points check the CPU first.
const objects = [];
const avx2 = ['-O3', '-mavx2', '-mfma', '-fno-math-errno'];
// The convolutions are built a second time for AVX-512, which conv-dispatch.cc picks on CPUs that have it.
const kernels = [
  ['conv-avx2', 'conv-avx2', avx2],
  ['conv-avx512', 'conv-avx2', [...avx2, '-mavx512f', '-DCOVNET_AVX512']],
  ['batch-norm', 'batch-norm', avx2],
  ['adam', 'adam', avx2],
  ['relu', 'relu', avx2],
  // The FedAvg fold must round each product before adding it, so it gets no FMA and no
  // contraction of a multiply and an add into one; F16C converts float16 updates.
  ['fedavg-fold', 'fedavg-fold', ['-O3', '-mavx2', '-mf16c', '-ffp-contract=off']],
  ['conv-dispatch', 'conv-dispatch', ['-O2']],
  ['addon', 'addon', ['-O2']],
];
for (const [object, source, flags] of kernels) {
  objects.push(path.join(outDir, `${object}.o`));
  run(compiler, [...common, ...flags, '-c', `src/${source}.cc`, '-o', objects[objects.length - 1]]);
}
run(compiler, ['-shared', '-pthread', ...objects, '-o', partial]);
// Renamed into place, so a build that is interrupted never leaves a half-written addon.
const built = fs.readFileSync(partial);
const stamp = { bytes: built.length, sha256: require('node:crypto').createHash('sha256').update(built).digest('hex') };
fs.renameSync(partial, target);
fs.writeFileSync(stampFile, `${JSON.stringify(stamp)}\n`);
process.stderr.write(`@covnet/native-kernels: built ${path.relative(process.cwd(), target)}\n`);
