import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'node_modules' ? [] : sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

// Module specifiers of every import, export-from and require in a project's sources.
function importsOf(project: string): { file: string; specifier: string }[] {
  const pattern = /(?:from\s+|import\s*\(\s*|require\s*\(\s*|import\s+)['"]([^'"]+)['"]/g;
  return sourceFiles(join(ROOT, project, 'src')).flatMap((file) =>
    [...readFileSync(file, 'utf8').matchAll(pattern)].map((m) => ({ file: relative(ROOT, file), specifier: m[1] })),
  );
}

function violations(project: string, forbidden: (specifier: string) => boolean): string[] {
  return importsOf(project)
    .filter((i) => forbidden(i.specifier))
    .map((i) => `${i.file} imports ${i.specifier}`);
}

describe('dependency boundaries', () => {
  it('keeps libs/protocol free of project imports', () => {
    expect(violations('libs/protocol', (s) => s.startsWith('@covnet/'))).toEqual([]);
  });

  it('keeps libs from importing apps', () => {
    for (const lib of ['libs/protocol', 'libs/imaging', 'libs/model']) {
      expect(violations(lib, (s) => /^@covnet\/(coordinator|site-agent|demo)/.test(s) || s.includes('/apps/'))).toEqual([]);
    }
  });

  it('keeps TensorFlow out of the coordinator', () => {
    expect(violations('apps/coordinator', (s) => s.startsWith('@tensorflow/') || s === '@covnet/model' || s === '@covnet/imaging')).toEqual([]);
  });

  it('keeps libs/imaging independent of the model', () => {
    expect(violations('libs/imaging', (s) => s === '@covnet/model' || s.startsWith('@tensorflow/'))).toEqual([]);
  });

  it('finds the imports it checks', () => {
    // Guards the scanner itself: the coordinator does import the protocol library.
    expect(importsOf('apps/coordinator').some((i) => i.specifier === '@covnet/protocol')).toBe(true);
  });
});
