import { cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { DataSource, type DataSourceOptions } from 'typeorm';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeWeights, type EvaluateTask, type NamedTensor, type TrainTask } from '@covnet/protocol';
import { FakeAgent } from './support/fake-agent';
import { ADMIN_TOKEN, INITIAL_META, TOKENS, getJson, initialTensors, queryDatabase, startFixture, type Fixture } from './support/fixtures';
import { TEST_DATABASE } from './support/test-database';

// Site A trained on 1 exam and site B on 3, so FedAvg gives (1*a + 3*b) / 4, exact in float32.
function update(kernel: number[], bias: number[], movingMean: number[]): NamedTensor[] {
  return [
    { name: 'dense/kernel', shape: [2, 3], data: new Float32Array(kernel) },
    { name: 'dense/bias', shape: [3], data: new Float32Array(bias) },
    { name: 'bn/moving_mean', shape: [3], data: new Float32Array(movingMean) },
  ];
}
const UPDATE_A = update([1, 2, -4, 0.5, 8, 3], [0, 1, 2], [0.25, 0, 1]);
const UPDATE_B = update([5, 2, 0, 0.5, -8, 7], [4, 1, -2], [0.25, 4, 1]);
// By hand: (1*a + 3*b) / 4 element by element.
const EXPECTED_V1 = update([4, 2, -1, 0.5, -4, 6], [3, 1, -1], [0.25, 3, 1]);

/** A pino logger whose JSON lines are collected in `lines`. */
function capturingLogger(): { logger: pino.Logger; lines: () => any[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      chunks.push(String(chunk));
      callback();
    },
  });
  const logger = pino({ level: 'info' }, stream);
  return { logger, lines: () => chunks.join('').split('\n').filter(Boolean).map((line) => JSON.parse(line)) };
}

describe('data dir paths', () => {
  let fixture: Fixture | null = null;
  const agents: FakeAgent[] = [];
  const folders: string[] = [];

  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.close();
    await fixture?.cleanup();
    fixture = null;
    for (const folder of folders.splice(0)) await rm(folder, { recursive: true, force: true });
  });

  async function joinSite(f: Fixture, site: keyof typeof TOKENS): Promise<FakeAgent> {
    const agent = FakeAgent.forToken(f.baseUrl, TOKENS[site]);
    agents.push(agent);
    await agent.connect();
    expect((await agent.hello()).ok).toBe(true);
    return agent;
  }

  function closeAgents(): void {
    for (const agent of agents.splice(0)) agent.close();
  }

  /** Runs round 1 of a two-round federation to its evaluation, so that version 1 is stored. */
  async function runFirstRound(f: Fixture): Promise<void> {
    const a = await joinSite(f, 'site-a');
    const b = await joinSite(f, 'site-b');
    await a.next<TrainTask>('round:train');
    await b.next<TrainTask>('round:train');
    expect(await a.upload(1, 0, 1, encodeWeights(UPDATE_A))).toEqual({ ok: true, accepted: true });
    expect(await b.upload(1, 0, 3, encodeWeights(UPDATE_B))).toEqual({ ok: true, accepted: true });
    expect(await a.next<EvaluateTask>('round:evaluate')).toMatchObject({ round: 1, modelVersion: 1 });
    closeAgents();
  }

  async function newFolder(): Promise<string> {
    const folder = await mkdtemp(join(tmpdir(), 'coordinator-moved-'));
    folders.push(folder);
    return folder;
  }

  it('stores checkpoint paths relative to the data dir', async () => {
    fixture = await startFixture({ rounds: 2 });
    await runFirstRound(fixture);
    const rows = await queryDatabase<{ version: number; path: string }>(fixture, 'SELECT version, path FROM model_versions ORDER BY version');
    expect(rows).toEqual([
      { version: 0, path: 'checkpoints/model-v0.cvnw' },
      { version: 1, path: 'checkpoints/model-v1.cvnw' },
    ]);
  });

  it.skipIf(TEST_DATABASE !== 'sqlite')('starts from a moved data dir', async () => {
    fixture = await startFixture({ rounds: 2 });
    await runFirstRound(fixture);
    await fixture.coordinator.close();
    const moved = join(await newFolder(), 'moved');
    await rename(fixture.dataDir, moved);

    await fixture.restart({ dataDir: moved });
    const models = await getJson(`${fixture.baseUrl}/api/models`);
    expect(models.body.map((m: { version: number }) => m.version)).toEqual([0, 1]);
    const download = await fetch(`${fixture.baseUrl}/api/models/1/download`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(Buffer.from(await download.arrayBuffer()).equals(encodeWeights(EXPECTED_V1, 'float32', INITIAL_META))).toBe(true);
  });

  it.skipIf(TEST_DATABASE !== 'sqlite')('reads the files of a copied data dir', async () => {
    fixture = await startFixture({ rounds: 2 });
    await runFirstRound(fixture);
    await fixture.coordinator.close();
    const original = fixture.dataDir;
    const copy = join(await newFolder(), 'copy');
    await cp(original, copy, { recursive: true });
    // The original's checkpoint changes after the copy; the copy must not read it.
    await writeFile(join(original, 'checkpoints', 'model-v1.cvnw'), encodeWeights(initialTensors(), 'float32', INITIAL_META));
    folders.push(original);

    await fixture.restart({ dataDir: copy });
    const a = await joinSite(fixture, 'site-a');
    await joinSite(fixture, 'site-b');
    // Round 1 was evaluating when the coordinator closed, so it evaluates version 1 again.
    const task = await a.next<EvaluateTask>('round:evaluate');
    expect(task).toMatchObject({ round: 1, modelVersion: 1 });
    const pulled = await a.pullModel(1, task.model);
    expect(pulled.equals(encodeWeights(EXPECTED_V1, 'float32', INITIAL_META))).toBe(true);
  });

  it('rewrites absolute paths inside the data dir as relative ones', async () => {
    fixture = await startFixture({ rounds: 2 });
    await runFirstRound(fixture);
    await fixture.coordinator.close();
    // Coordinators before relative paths stored the absolute path of each checkpoint.
    await rewritePaths(fixture, (version) => join(fixture!.dataDir, 'checkpoints', `model-v${version}.cvnw`));

    await fixture.restart();
    const rows = await queryDatabase<{ path: string }>(fixture, 'SELECT path FROM model_versions ORDER BY version');
    expect(rows.map((row) => row.path)).toEqual(['checkpoints/model-v0.cvnw', 'checkpoints/model-v1.cvnw']);
    expect((await getJson(`${fixture.baseUrl}/api/models`)).body.length).toBe(2);
  });

  it('rejects an absolute path outside the data dir', async () => {
    fixture = await startFixture({ rounds: 2 });
    await runFirstRound(fixture);
    await fixture.coordinator.close();
    // A checkpoint with the right bytes, but in another folder, as in the data dir that a copy came from.
    const elsewhere = join(await newFolder(), 'model-v1.cvnw');
    await writeFile(elsewhere, await readFile(join(fixture.dataDir, 'checkpoints', 'model-v1.cvnw')));
    await rewritePaths(fixture, (version) => (version === 1 ? elsewhere : `checkpoints/model-v${version}.cvnw`));

    const failure = fixture.restart().then(
      () => null,
      (error: Error) => error,
    );
    const error = await failure;
    expect(error).not.toBeNull();
    expect(error!.message).toContain(elsewhere);
    expect(error!.message).toContain('model version 1');
    expect(error!.message).toContain('outside the data dir');
    // The fixture's cleanup closes a coordinator; the failed start left the closed one.
  });

  it('rejects a relative path that leaves the data dir', async () => {
    fixture = await startFixture({ rounds: 2 });
    await runFirstRound(fixture);
    await fixture.coordinator.close();
    await rewritePaths(fixture, (version) => (version === 1 ? '../other/checkpoints/model-v1.cvnw' : `checkpoints/model-v${version}.cvnw`));

    const error = await fixture.restart().then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.message).toMatch(/stored path \.\.\/other\/checkpoints\/model-v1\.cvnw resolves to .* outside the data dir/);
  });

  it('rejects a second experiment in the shared checkpoint folder', async () => {
    fixture = await startFixture({ rounds: 2 });
    await runFirstRound(fixture);
    expect(JSON.parse(await readFile(join(fixture.dataDir, 'checkpoints', 'experiment.json'), 'utf8'))).toEqual({ experiment: 'test' });
    await fixture.coordinator.close();

    const error = await fixture.restart({ experiment: 'other' }).then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.message).toContain('already contains checkpoints of experiment "test"');
  });

  it('recognises the owner of a data dir from its absolute paths', async () => {
    fixture = await startFixture({ rounds: 2 });
    await runFirstRound(fixture);
    await fixture.coordinator.close();
    // A data dir written before the owner file existed: absolute paths and no experiment.json.
    await rewritePaths(fixture, (version) => join(fixture!.dataDir, 'checkpoints', `model-v${version}.cvnw`));
    await rm(join(fixture.dataDir, 'checkpoints', 'experiment.json'));

    const error = await fixture.restart({ experiment: 'other' }).then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.message).toContain('already contains checkpoints of experiment "test"');
  });

  it.skipIf(TEST_DATABASE !== 'sqlite')('resumes a round with stored updates in a moved data dir', async () => {
    fixture = await startFixture({ rounds: 1 });
    const a = await joinSite(fixture, 'site-a');
    const b = await joinSite(fixture, 'site-b');
    await a.next<TrainTask>('round:train');
    await b.next<TrainTask>('round:train');
    expect(await a.upload(1, 0, 1, encodeWeights(UPDATE_A))).toEqual({ ok: true, accepted: true });
    const [stored] = await queryDatabase<{ payload_path: string }>(fixture, 'SELECT payload_path FROM updates');
    expect(isAbsolute(stored.payload_path)).toBe(false);
    closeAgents();
    await fixture.coordinator.close();
    const moved = join(await newFolder(), 'moved');
    await rename(fixture.dataDir, moved);

    await fixture.restart({ dataDir: moved });
    const a2 = await joinSite(fixture, 'site-a');
    const b2 = await joinSite(fixture, 'site-b');
    expect(await b2.next<TrainTask>('round:train')).toMatchObject({ round: 1, modelVersion: 0 });
    expect(await b2.upload(1, 0, 3, encodeWeights(UPDATE_B))).toEqual({ ok: true, accepted: true });
    expect(await a2.next<EvaluateTask>('round:evaluate')).toMatchObject({ round: 1, modelVersion: 1 });
    const checkpoint = await readFile(join(moved, 'checkpoints', 'model-v1.cvnw'));
    expect(checkpoint.equals(encodeWeights(EXPECTED_V1, 'float32', INITIAL_META))).toBe(true);
  });
});

describe('stale temporary checkpoint files', () => {
  let fixture: Fixture | null = null;

  afterEach(async () => {
    await fixture?.cleanup();
    fixture = null;
  });

  it('removes only the store own temporary files at start', async () => {
    const own = ['model-v1.cvnw.4242.tmp', 'model-v12.cvnw.7.tmp', 'fedadam-v3.state.99.tmp'];
    const foreign = ['notes.tmp', 'model-v1.cvnw.tmp', 'model-v1.cvnw.4242.tmp.keep', 'backup-model-v1.cvnw.1.tmp'];
    fixture = await startFixture({
      rounds: 2,
      beforeStart: async (dataDir) => {
        await mkdir(join(dataDir, 'checkpoints'), { recursive: true });
        for (const name of [...own, ...foreign]) await writeFile(join(dataDir, 'checkpoints', name), 'partial');
      },
    });
    // The first start runs before a logger can be passed, so a restart shows the log line.
    for (const name of own) expect(existsSync(join(fixture.dataDir, 'checkpoints', name)), name).toBe(false);
    for (const name of foreign) expect(existsSync(join(fixture.dataDir, 'checkpoints', name)), name).toBe(true);

    await writeFile(join(fixture.dataDir, 'checkpoints', 'model-v1.cvnw.555.tmp'), 'partial');
    const capture = capturingLogger();
    await fixture.restart({ logger: capture.logger });
    expect(existsSync(join(fixture.dataDir, 'checkpoints', 'model-v1.cvnw.555.tmp'))).toBe(false);
    const line = capture.lines().find((entry) => Array.isArray(entry.files));
    expect(line?.files).toEqual(['model-v1.cvnw.555.tmp']);
    expect(line?.msg).toContain('removed 1 temporary files');
  });
});

/** Sets the stored path of every model version of the test experiment, outside the coordinator. */
async function rewritePaths(fixture: Fixture, pathOf: (version: number) => string): Promise<void> {
  const options = { ...fixture.database.dataSourceOptions, readonly: false } as DataSourceOptions;
  const dataSource = new DataSource(options);
  await dataSource.initialize();
  try {
    const rows: { version: number }[] = await dataSource.query('SELECT version FROM model_versions');
    const update = TEST_DATABASE === 'sqlite' ? 'UPDATE model_versions SET path = ? WHERE version = ?' : 'UPDATE model_versions SET path = $1 WHERE version = $2';
    for (const row of rows) await dataSource.query(update, [pathOf(row.version), row.version]);
  } finally {
    await dataSource.destroy();
  }
}
