import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSyntheticArchive } from '@covnet/imaging';
import { createCovnet, initBackend } from '@covnet/model';
import type { FederationDone, UpdateBegin } from '@covnet/protocol';
import { FederationAgent, SiteArchive } from '@covnet/site-agent';
import { CoordinatorProcess, prepareFederation, type LocalFederation } from '../scripts/chaos/federation';
import { withDatabase } from '../scripts/chaos/replay';

const ROUNDS = 2;

describe('site agents across a coordinator crash', () => {
  const workDir = mkdtempSync(join(tmpdir(), 'covnet-agent-recovery-'));
  const sent: { site: string; event: string; payload: unknown }[] = [];
  let federation: LocalFederation;
  let coordinator: CoordinatorProcess;
  let done: FederationDone[] = [];
  let killedAfterCommit = '';
  let exitCode: number | null = null;
  const agents: FederationAgent[] = [];

  beforeAll(async () => {
    await initBackend();
    const covnet = createCovnet({ backbone: 'small', inputSize: 32, seed: 3 });
    const initial = covnet.getNamedWeights();
    covnet.dispose();
    federation = await prepareFederation(workDir, 2, initial, { backbone: 'small', inputSize: 32, maxSlices: 4 });
    coordinator = new CoordinatorProcess(federation, ['--rounds', String(ROUNDS), '--min-sites', '2', '--round-timeout-s', '120', '--epochs', '1', '--learning-rate', '0.001', '--batch-size', '2']);
    await coordinator.start();

    // The coordinator dies the moment the first update:commit leaves an agent,
    // so the commit is lost, half done or done without its acknowledgement.
    let restarted: Promise<void> | null = null;
    for (const [i, site] of federation.sites.entries()) {
      const archive = join(workDir, site.name);
      await writeSyntheticArchive(archive, { exams: 6, seed: 21 + i, rows: 64, valFraction: 0.5 });
      agents.push(
        new FederationAgent({
          coordinatorUrl: federation.url,
          token: site.token,
          archive: await SiteArchive.open(archive),
          backend: 'wasm',
          agentVersion: 'test',
          onOutgoing: (event, args) => {
            sent.push({ site: site.name, event, payload: args[0] });
            if (event === 'update:commit' && restarted === null) {
              killedAfterCommit = site.name;
              restarted = coordinator.kill().then(() => coordinator.start());
            }
          },
        }),
      );
    }
    // The coordinator runs with --exit-when-done: it waits for every agent's
    // acknowledgement of federation:done before it exits.
    done = await Promise.all(agents.map((agent) => agent.run()));
    await restarted;
    exitCode = await coordinator.exited;
  }, 120_000);

  afterAll(async () => {
    for (const agent of agents) agent.close();
    await coordinator?.kill();
    if (!process.env.KEEP) rmSync(workDir, { recursive: true, force: true });
  });

  it('finishes every round', async () => {
    expect(killedAfterCommit).not.toBe('');
    expect(coordinator.starts).toBe(2);
    expect(exitCode).toBe(0);
    expect(done.map((d) => d.rounds)).toEqual([ROUNDS, ROUNDS]);
    const rounds = await withDatabase(join(federation.dataDir, 'coordinator.sqlite'), (db) => db.query('SELECT state FROM rounds ORDER BY number'));
    expect(rounds).toEqual(Array(ROUNDS).fill({ state: 'done' }));
  });

  it('records one update per site and round', async () => {
    const updates = (await withDatabase(join(federation.dataDir, 'coordinator.sqlite'), (db) =>
      db.query('SELECT round, site, sha256 FROM updates ORDER BY round, site'),
    )) as { round: number; site: string; sha256: string }[];
    expect(updates.map((u) => `${u.round}/${u.site}`)).toEqual(['1/site-01', '1/site-02', '2/site-01', '2/site-02']);
    // What each site recorded is what it announced in its update:begin for that round.
    for (const update of updates) {
      const begins = sent.filter((m) => m.site === update.site && m.event === 'update:begin').map((m) => m.payload as UpdateBegin);
      expect(begins.filter((b) => b.round === update.round).map((b) => b.payload.sha256)).toContain(update.sha256);
    }
  });

  it('trains each round once per site', () => {
    // A site that sends again after the crash sends the same update, not a newly trained one.
    for (const site of federation.sites) {
      for (let round = 1; round <= ROUNDS; round++) {
        const hashes = new Set(
          sent.filter((m) => m.site === site.name && m.event === 'update:begin' && (m.payload as UpdateBegin).round === round).map((m) => (m.payload as UpdateBegin).payload.sha256),
        );
        expect(hashes.size, `${site.name} round ${round}`).toBe(1);
      }
    }
  });
});
