import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DicomReadError, SeededRandom, parseCtSlice, writeSyntheticArchive } from '@covnet/imaging';
import { ProtocolError, decodeWeights, encodeWeights, parseEvent, type EventName } from '@covnet/protocol';

type Mutation = 'flip' | 'truncate' | 'huge-length' | 'insert' | 'zero-run';
const MUTATIONS: Mutation[] = ['flip', 'truncate', 'huge-length', 'insert', 'zero-run'];

// Deterministic mutations, so a failure names a case that can be run again.
function seeded(seed: number): () => number {
  const generator = new SeededRandom(seed);
  return () => generator.next();
}

/** Returns a mutated copy of `input`: bit flips, a cut, a 32-bit field set to a huge value, inserted or zeroed bytes. */
function mutate(input: Uint8Array, random: () => number, headerBytes: number): { bytes: Uint8Array; kind: Mutation } {
  const kind = MUTATIONS[Math.floor(random() * MUTATIONS.length)];
  // Most structure sits in the header, so most mutations land there.
  const at = (limit = input.length) => Math.floor(random() * Math.min(limit, random() < 0.8 ? headerBytes : input.length));
  const bytes = Uint8Array.from(input);
  switch (kind) {
    case 'flip': {
      const flips = 1 + Math.floor(random() * 8);
      for (let i = 0; i < flips; i++) bytes[at()] ^= 1 << Math.floor(random() * 8);
      return { bytes, kind };
    }
    case 'truncate':
      return { bytes: bytes.subarray(0, at()), kind };
    case 'huge-length': {
      const offset = Math.max(0, at(input.length - 4));
      new DataView(bytes.buffer).setUint32(offset, [0xffffffff, 0x7ffffff0, 0x10000000][Math.floor(random() * 3)], true);
      return { bytes, kind };
    }
    case 'insert': {
      const offset = at();
      const extra = Uint8Array.from({ length: 1 + Math.floor(random() * 16) }, () => Math.floor(random() * 256));
      const out = new Uint8Array(bytes.length + extra.length);
      out.set(bytes.subarray(0, offset));
      out.set(extra, offset);
      out.set(bytes.subarray(offset), offset + extra.length);
      return { bytes: out, kind };
    }
    case 'zero-run': {
      const offset = at();
      bytes.fill(0, offset, offset + 1 + Math.floor(random() * 64));
      return { bytes, kind };
    }
  }
}

const CASES = 3000;
// Generous per-input bound: a hang or a runaway allocation shows up as far more.
const MAX_MS_PER_INPUT = 250;

describe('weight decoder under mutated payloads', () => {
  const valid = encodeWeights([
    { name: 'stem_conv/kernel', shape: [3, 3, 1, 4], data: Float32Array.from({ length: 36 }, (_, i) => i / 7) },
    { name: 'stem_bn/moving_mean', shape: [4], data: Float32Array.from([0.1, 0.2, 0.3, 0.4]) },
  ]);
  const manifestEnd = 12 + valid.readUInt32LE(8);

  it('decodes or rejects with a coded error, quickly', () => {
    const random = seeded(1);
    const outcomes = { decoded: 0, rejected: 0 };
    for (let i = 0; i < CASES; i++) {
      const { bytes, kind } = mutate(valid, random, manifestEnd);
      const started = performance.now();
      try {
        const decoded = decodeWeights(bytes);
        // Whatever decodes must be self-consistent: each tensor's values fill its shape.
        for (const t of decoded.tensors) expect(t.data.length, `case ${i} (${kind})`).toBe(t.shape.reduce((a, b) => a * b, 1));
        outcomes.decoded += 1;
      } catch (error) {
        expect(error, `case ${i} (${kind}): ${String(error)}`).toBeInstanceOf(ProtocolError);
        expect((error as ProtocolError).message.length).toBeGreaterThan(10);
        outcomes.rejected += 1;
      }
      expect(performance.now() - started, `case ${i} (${kind})`).toBeLessThan(MAX_MS_PER_INPUT);
    }
    // Both outcomes occur, so the mutations reach the checks as well as past them.
    expect(outcomes.rejected).toBeGreaterThan(CASES / 2);
    expect(outcomes.decoded).toBeGreaterThan(0);
  });
});

describe('event validation under mutated messages', () => {
  const samples: [EventName, unknown][] = [
    ['model:chunk', { version: 1, index: 2 }],
    ['update:commit', { uploadId: 'u-1' }],
    ['update:begin', { round: 1, modelVersion: 0, numExamples: 4, trainLoss: 0.5, payload: { sha256: 'a'.repeat(64), byteLength: 10, chunkCount: 1, chunkBytes: 1024 } }],
    ['site:hello', { agentVersion: '1', backend: 'wasm', trainExams: { covid19: 1, cap: 1, non_pneumonia: 1 }, valExams: { covid19: 0, cap: 0, non_pneumonia: 1 } }],
  ];
  const strange = [null, undefined, -1, 1e308, NaN, '', 'x'.repeat(10_000), [], {}, true, new Uint8Array(4), { __proto__: { polluted: 1 } }];

  it('accepts or rejects with invalid_message naming a field', () => {
    const random = seeded(2);
    for (let i = 0; i < CASES; i++) {
      const [event, sample] = samples[i % samples.length];
      const message = JSON.parse(JSON.stringify(sample)) as Record<string, unknown>;
      const keys = Object.keys(message);
      const key = random() < 0.1 ? `extra${i}` : keys[Math.floor(random() * keys.length)];
      message[key] = strange[Math.floor(random() * strange.length)];
      try {
        parseEvent(event, message);
      } catch (error) {
        expect(error, `case ${i}`).toBeInstanceOf(ProtocolError);
        expect((error as ProtocolError).code).toBe('invalid_message');
        expect((error as ProtocolError).message).toMatch(new RegExp(`^${event}: field `));
      }
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('DICOM reader under mutated files', () => {
  let work = '';
  let slice = new Uint8Array(0);

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'covnet-fuzz-'));
    await writeSyntheticArchive(work, { exams: 1, seed: 3, rows: 32, valFraction: 0 });
    const exam = readdirSync(work).find((name) => name.startsWith('exam-'))!;
    const file = readdirSync(join(work, exam)).sort()[0];
    slice = new Uint8Array(readFileSync(join(work, exam, file)));
  });

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('reads or rejects naming the file, quickly', () => {
    const random = seeded(3);
    const pixelStart = slice.length - 32 * 32 * 2;
    let rejected = 0;
    for (let i = 0; i < CASES; i++) {
      const { bytes, kind } = mutate(slice, random, pixelStart);
      const path = `fuzz/case-${i}.dcm`;
      const started = performance.now();
      try {
        const result = parseCtSlice(bytes, path);
        expect(result.hu.length, `case ${i} (${kind})`).toBe(result.header.rows * result.header.columns);
      } catch (error) {
        expect(error, `case ${i} (${kind}): ${String(error)}`).toBeInstanceOf(DicomReadError);
        expect((error as Error).message, `case ${i} (${kind})`).toContain(path);
        rejected += 1;
      }
      expect(performance.now() - started, `case ${i} (${kind})`).toBeLessThan(MAX_MS_PER_INPUT);
    }
    expect(rejected).toBeGreaterThan(CASES / 4);
  });
});
