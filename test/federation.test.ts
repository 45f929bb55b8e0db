import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dcmjs from 'dcmjs';
import { writeSyntheticArchive } from '@covnet/imaging';
import { createCovnet, initBackend } from '@covnet/model';
import { decodeWeights, encodeWeights, sha256Hex, type FederationDone } from '@covnet/protocol';
import { AgentStatus, FederationAgent, SiteArchive, type AgentStatusRecord } from '@covnet/site-agent';
import { loadConfig, startCoordinator } from '@covnet/coordinator';

interface Sent {
  site: string;
  event: string;
  args: unknown[];
}

const INPUT_SIZE = 32;
const ADMIN_TOKEN = 'admin-token-of-the-federation-test';
const AS_ADMIN = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
const ROUNDS = 2;

// Identifying strings of the synthetic archives: every DICOM UID and patient
// attribute written into the files, read back with dcmjs.
function identifyingValues(archive: string): Set<string> {
  const values = new Set<string>();
  for (const exam of readdirSync(archive, { withFileTypes: true })) {
    if (!exam.isDirectory()) continue;
    values.add(exam.name);
    const files = readdirSync(join(archive, exam.name));
    const file = readFileSync(join(archive, exam.name, files[0]));
    const dict = dcmjs.data.DicomMessage.readFile(file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength));
    const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dict.dict) as Record<string, unknown>;
    for (const key of ['StudyInstanceUID', 'SeriesInstanceUID', 'SOPInstanceUID', 'FrameOfReferenceUID', 'PatientName', 'PatientID', 'PatientBirthDate', 'AccessionNumber']) {
      const value = ds[key];
      const text = typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value ?? '');
      if (text && text !== 'undefined' && text.length >= 4) values.add(text.replace(/^\[?\{?"?(Alphabetic"?:"?)?/, '').replace(/"?\}?\]?$/, ''));
    }
  }
  return values;
}

describe('federation of two sites in one process', () => {
  const work = mkdtempSync(join(tmpdir(), 'covnet-federation-'));
  const sent: Sent[] = [];
  let done: FederationDone[] = [];
  let coordinator: Awaited<ReturnType<typeof startCoordinator>>;
  let initialSha = '';
  const identifiers = new Set<string>();

  beforeAll(async () => {
    await initBackend();
    const sites = [
      { name: 'site-a', token: 'token-a-0123456789', exams: 8, seed: 11 },
      { name: 'site-b', token: 'token-b-0123456789', exams: 6, seed: 12 },
    ];
    for (const site of sites) {
      const archive = join(work, site.name);
      await writeSyntheticArchive(archive, { exams: site.exams, seed: site.seed, rows: 64, valFraction: 0.5 });
      for (const value of identifyingValues(archive)) identifiers.add(value);
    }
    const covnet = createCovnet({ backbone: 'small', inputSize: INPUT_SIZE, seed: 3 });
    const initial = encodeWeights(covnet.getNamedWeights(), 'float32', { backbone: 'small', inputSize: INPUT_SIZE, maxSlices: 4 });
    covnet.dispose();
    initialSha = sha256Hex(initial);
    writeFileSync(join(work, 'initial.cvnw'), initial);
    writeFileSync(
      join(work, 'sites.json'),
      JSON.stringify({ sites: sites.map((s) => ({ name: s.name, tokenSha256: createHash('sha256').update(s.token).digest('hex') })) }),
    );
    const config = loadConfig(
      ['--port', '0', '--data-dir', join(work, 'coordinator'), '--sites', join(work, 'sites.json'), '--initial-model', join(work, 'initial.cvnw'),
        '--rounds', String(ROUNDS), '--min-sites', '2', '--epochs', '1', '--learning-rate', '0.001', '--batch-size', '2'],
      { COVNET_ADMIN_TOKEN: ADMIN_TOKEN },
    );
    coordinator = await startCoordinator(config);
    const url = `http://127.0.0.1:${coordinator.port}`;
    const agents = await Promise.all(
      sites.map(async (site) => new FederationAgent({
        coordinatorUrl: url,
        token: site.token,
        archive: await SiteArchive.open(join(work, site.name)),
        backend: 'wasm',
        agentVersion: 'test',
        onOutgoing: (event, args) => sent.push({ site: site.name, event, args }),
        status: new AgentStatus(url, join(work, `${site.name}-status.json`)),
      })),
    );
    done = await Promise.all(agents.map((agent) => agent.run()));
  }, 600_000);

  afterAll(async () => {
    await coordinator?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('finishes every round', async () => {
    expect(done.map((d) => d.rounds)).toEqual([ROUNDS, ROUNDS]);
    const rounds = (await (await fetch(`http://127.0.0.1:${coordinator.port}/api/rounds`, AS_ADMIN)).json()) as { round: number; state: string }[];
    expect(rounds.map((r) => r.state)).toEqual(Array(ROUNDS).fill('done'));
  });

  it('leaves a status file of what each agent sent', () => {
    for (const site of ['site-a', 'site-b']) {
      const status = JSON.parse(readFileSync(join(work, `${site}-status.json`), 'utf8')) as AgentStatusRecord;
      expect(status.connection, site).toBe('finished');
      expect(status.site, site).toBe(site);
      expect(status.lastRound, site).toBe(ROUNDS);
      expect(status.sent.messages, site).toBe(sent.filter((s) => s.site === site).length);
      expect(status.sent.updates, site).toBe(ROUNDS);
      expect(status.sent.metricsReports, site).toBe(ROUNDS);
    }
  });

  it('stores per-site metrics for every round', async () => {
    for (let round = 1; round <= ROUNDS; round++) {
      const metrics = (await (await fetch(`http://127.0.0.1:${coordinator.port}/api/rounds/${round}/metrics`, AS_ADMIN)).json()) as {
        sites: { site: string; valExams: number }[];
      };
      expect(metrics.sites.map((s) => s.site).sort()).toEqual(['site-a', 'site-b']);
      for (const site of ['site-a', 'site-b']) {
        const labels = readFileSync(join(work, site, 'labels.csv'), 'utf8');
        const valLines = labels.split('\n').filter((line) => line.endsWith(',val')).length;
        expect(metrics.sites.find((s) => s.site === site)!.valExams, site).toBe(valLines);
      }
    }
  });

  it('writes a checkpoint per version with its SHA-256', async () => {
    const dir = join(work, 'coordinator', 'checkpoints');
    const files = readdirSync(dir).filter((f) => f.endsWith('.cvnw')).sort();
    expect(files).toHaveLength(ROUNDS + 1);
    const last = readFileSync(join(dir, files[files.length - 1]));
    expect(sha256Hex(last)).not.toBe(initialSha);
    expect(decodeWeights(last).tensors.length).toBe(decodeWeights(readFileSync(join(work, 'initial.cvnw'))).tensors.length);
  });

  describe('when recording every outbound message', () => {
    it('sends binary data only as update chunks', () => {
      for (const message of sent) {
        for (const arg of message.args) {
          if (typeof arg === 'function') continue;
          const binaries = findBinary(arg);
          if (message.event === 'update:chunk') expect(binaries, message.event).toEqual(['data']);
          else expect(binaries, message.event).toEqual([]);
        }
      }
    });

    it('sends update payloads that decode to model weights only', () => {
      for (const site of ['site-a', 'site-b']) {
        const chunks = sent.filter((m) => m.site === site && m.event === 'update:chunk').map((m) => m.args[0] as { uploadId: string; index: number; data: Uint8Array });
        const uploads = new Map<string, Buffer[]>();
        for (const c of chunks) uploads.set(c.uploadId, [...(uploads.get(c.uploadId) ?? []), Buffer.from(c.data)]);
        expect(uploads.size).toBe(ROUNDS);
        const initialNames = decodeWeights(readFileSync(join(work, 'initial.cvnw'))).tensors.map((t) => `${t.name}:${t.shape}`);
        for (const parts of uploads.values()) {
          const decoded = decodeWeights(Buffer.concat(parts));
          expect(decoded.tensors.map((t) => `${t.name}:${t.shape}`)).toEqual(initialNames);
        }
      }
    });

    it('sends no DICOM UID, patient attribute or exam id', () => {
      expect(identifiers.size).toBeGreaterThan(10);
      const text = JSON.stringify(sent.map((m) => ({ event: m.event, args: m.args.filter((a) => typeof a !== 'function') })), (_k, v) =>
        v instanceof Uint8Array || (v && v.type === 'Buffer') ? '<binary>' : v,
      );
      for (const value of identifiers) expect(text.includes(value), `message contains ${value}`).toBe(false);
      expect(text).not.toMatch(/\b1\.2\.\d+(\.\d+){3,}/);
    });

    it('sends no list longer than a score histogram', () => {
      const longest = (value: unknown): number =>
        Array.isArray(value) ? Math.max(value.length, ...value.map(longest)) : value && typeof value === 'object' && !(value instanceof Uint8Array) ? Math.max(0, ...Object.values(value).map(longest)) : 0;
      for (const message of sent) expect(longest(message.args), message.event).toBeLessThanOrEqual(200);
    });
  });
});

function findBinary(value: unknown, path = ''): string[] {
  if (value instanceof Uint8Array || value instanceof ArrayBuffer) return [path];
  if (Array.isArray(value)) return value.flatMap((v, i) => findBinary(v, `${path}[${i}]`));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => findBinary(v, path ? `${path}.${k}` : k));
  return [];
}
