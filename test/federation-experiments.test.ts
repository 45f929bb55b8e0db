import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSyntheticArchive } from '@covnet/imaging';
import { createCovnet, initBackend } from '@covnet/model';
import { decodeWeights, encodeWeights, sha256Hex, type FederationDone } from '@covnet/protocol';
import { FederationAgent, SiteArchive } from '@covnet/site-agent';
import { loadConfig, startCoordinator } from '@covnet/coordinator';

const ADMIN_TOKEN = 'admin-token-of-the-experiments-test';
const AS_ADMIN = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };

// Two experiments with different input sizes and initial weights, so that an
// agent that reused the other experiment's model would train the wrong one.
const EXPERIMENTS = [
  { name: 'input32', inputSize: 32, seed: 3, rounds: 2 },
  { name: 'input48', inputSize: 48, seed: 5, rounds: 1 },
] as const;

describe('federation of two experiments in one coordinator', () => {
  const work = mkdtempSync(join(tmpdir(), 'covnet-experiments-'));
  const sent: { site: string; event: string; payload: Record<string, unknown> }[] = [];
  const initialSha = new Map<string, string>();
  let done: FederationDone[] = [];
  let coordinator: Awaited<ReturnType<typeof startCoordinator>>;

  beforeAll(async () => {
    await initBackend();
    const sites = [
      { name: 'site-a', token: 'token-a-0123456789', exams: 6, seed: 21 },
      { name: 'site-b', token: 'token-b-0123456789', exams: 6, seed: 22 },
    ];
    for (const site of sites) {
      await writeSyntheticArchive(join(work, site.name), { exams: site.exams, seed: site.seed, rows: 64, valFraction: 0.5 });
    }
    for (const experiment of EXPERIMENTS) {
      const covnet = createCovnet({ backbone: 'small', inputSize: experiment.inputSize, seed: experiment.seed });
      const initial = encodeWeights(covnet.getNamedWeights(), 'float32', { backbone: 'small', inputSize: experiment.inputSize, maxSlices: 4 });
      covnet.dispose();
      initialSha.set(experiment.name, sha256Hex(initial));
      writeFileSync(join(work, `${experiment.name}.cvnw`), initial);
    }
    const consortium = {
      experiments: EXPERIMENTS.map((e) => ({
        name: e.name,
        rounds: e.rounds,
        minSites: 2,
        batchSize: 2,
        inputSize: e.inputSize,
        backbone: 'small',
        initialModel: `${e.name}.cvnw`,
      })),
    };
    writeFileSync(join(work, 'consortium.json'), JSON.stringify(consortium));
    writeFileSync(
      join(work, 'sites.json'),
      JSON.stringify({ sites: sites.map((s) => ({ name: s.name, tokenSha256: createHash('sha256').update(s.token).digest('hex') })) }),
    );
    const config = loadConfig(
      ['--port', '0', '--data-dir', join(work, 'coordinator'), '--sites', join(work, 'sites.json'), '--initial-model', join(work, 'input32.cvnw'),
        '--experiments', join(work, 'consortium.json')],
      { COVNET_ADMIN_TOKEN: ADMIN_TOKEN, LOG_LEVEL: 'silent' },
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
        onOutgoing: (event, args) => sent.push({ site: site.name, event, payload: (args[0] ?? {}) as Record<string, unknown> }),
      })),
    );
    done = await Promise.all(agents.map((agent) => agent.run()));
  }, 600_000);

  afterAll(async () => {
    await coordinator?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('finishes the rounds of both', async () => {
    // federation:done is sent once, by the experiment that finishes last.
    expect(done.map((d) => d.experiment)).toEqual(['input32', 'input32']);
    const summaries = await coordinator.summaries;
    expect(summaries.map((s) => [s.experiment, s.rounds])).toEqual([['input32', 2], ['input48', 1]]);
    for (const experiment of EXPERIMENTS) {
      const response = await fetch(`http://127.0.0.1:${coordinator.port}/api/rounds?experiment=${experiment.name}`, AS_ADMIN);
      const rounds = (await response.json()) as { state: string }[];
      expect(rounds.map((r) => r.state), experiment.name).toEqual(Array(experiment.rounds).fill('done'));
    }
  });

  it('names the experiment in every model, update and metrics message', () => {
    const named = new Set(EXPERIMENTS.map((e) => e.name as string));
    for (const event of ['model:chunk', 'update:begin', 'metrics:report']) {
      const messages = sent.filter((s) => s.event === event);
      expect(messages.length, event).toBeGreaterThan(0);
      expect(messages.every((m) => named.has(m.payload.experiment as string)), event).toBe(true);
    }
    const updates = sent.filter((s) => s.event === 'update:begin').map((s) => `${s.payload.experiment}:${s.payload.round}`);
    expect(updates.sort()).toEqual(['input32:1', 'input32:1', 'input32:2', 'input32:2', 'input48:1', 'input48:1']);
  });

  it('writes each lineage to its own folder', () => {
    for (const experiment of EXPERIMENTS) {
      const dir = join(work, 'coordinator', 'checkpoints', experiment.name);
      const files = readdirSync(dir).filter((f) => f.endsWith('.cvnw')).sort();
      expect(files, experiment.name).toHaveLength(experiment.rounds + 1);
      expect(sha256Hex(readFileSync(join(dir, 'model-v0.cvnw'))), experiment.name).toBe(initialSha.get(experiment.name));
      const last = decodeWeights(readFileSync(join(dir, `model-v${experiment.rounds}.cvnw`)));
      expect(last.meta.inputSize, experiment.name).toBe(experiment.inputSize);
    }
  });
});
