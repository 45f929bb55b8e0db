import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSyntheticArchive } from '@covnet/imaging';
import { startProcess, type ManagedProcess } from '../apps/demo/src/processes';
import { AgentProcess, CoordinatorProcess, lightModel, prepareFederation, type LocalFederation } from '../scripts/chaos/federation';

const ROUND_FLAGS = ['--rounds', '1', '--min-sites', '2', '--round-timeout-s', '30'];

/** Resolves with the exit code, or with 'running' when the process is still running after `ms`. */
function exitWithin(process: ManagedProcess | CoordinatorProcess, ms: number): Promise<number | null | 'running'> {
  return Promise.race([process.exited, new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), ms))]);
}

/** JSON log lines of a process's log file. */
function logLines(file: string): any[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line));
}

describe('federation:done with --exit-when-done', () => {
  const workDir = mkdtempSync(join(tmpdir(), 'covnet-done-delivery-'));
  let federation: LocalFederation;
  const running: ManagedProcess[] = [];
  const coordinators: CoordinatorProcess[] = [];

  beforeAll(async () => {
    federation = await prepareFederation(workDir, 2, lightModel(64));
    // A finished experiment: two light agents train its one round against a coordinator that keeps serving.
    const first = new CoordinatorProcess(federation, ROUND_FLAGS, false);
    coordinators.push(first);
    await first.start();
    const agents = federation.sites.map((site, i) => new AgentProcess(federation, site, { trainExams: 1 + i, trainMs: 50, seed: 3 }));
    for (const agent of agents) agent.start();
    expect(await Promise.all(agents.map((agent) => agent.exited))).toEqual([0, 0]);
    await first.kill();
  }, 120_000);

  afterAll(async () => {
    for (const process of running) process.child.kill('SIGKILL');
    for (const coordinator of coordinators) await coordinator.kill();
    if (!process.env.KEEP) rmSync(workDir, { recursive: true, force: true });
  });

  it('reaches site agents that connect after the last round', async () => {
    const coordinator = new CoordinatorProcess(federation, [...ROUND_FLAGS, '--done-timeout-s', '90'], true);
    coordinators.push(coordinator);
    const started = Date.now();
    await coordinator.start();

    // Real site agents, started only now: the experiment finished before they connect.
    const agents: ManagedProcess[] = [];
    for (const [i, site] of federation.sites.entries()) {
      const archive = join(workDir, `archive-${site.name}`);
      await writeSyntheticArchive(archive, { exams: 4, seed: 40 + i, rows: 32, valFraction: 0.5 });
      const agent = startProcess(
        site.name,
        'apps/site-agent/src/main.ts',
        ['run', '--coordinator', federation.url, '--archive', archive, '--site', site.name, '--cache-dir', join(workDir, `cache-${site.name}`), '--decode-threads', '1'],
        join(workDir, `agent-${site.name}.log`),
        { COVNET_SITE_TOKEN: site.token },
      );
      agents.push(agent);
      running.push(agent);
    }

    for (const agent of agents) expect(await exitWithin(agent, 60_000), `${agent.name}, see ${agent.logFile}`).toBe(0);
    expect(await exitWithin(coordinator, 30_000)).toBe(0);
    // Every site acknowledged, so the coordinator did not wait out its 90 s.
    expect(Date.now() - started).toBeLessThan(90_000);
    const log = logLines(join(workDir, 'coordinator.log'));
    const delivered = log.find((entry) => entry.msg === 'every site acknowledged federation:done');
    expect(delivered?.acknowledged).toEqual(['site-01', 'site-02']);
    for (const agent of agents) {
      const finished = logLines(agent.logFile).find((entry) => entry.msg === 'federation finished');
      expect(finished, agent.name).toMatchObject({ rounds: 1, finalModelVersion: 1 });
    }
  }, 150_000);

  it('exits after the timeout when a site never returns', async () => {
    const coordinator = new CoordinatorProcess(federation, [...ROUND_FLAGS, '--done-timeout-s', '2'], true);
    coordinators.push(coordinator);
    const started = Date.now();
    await coordinator.start();
    expect(await exitWithin(coordinator, 30_000)).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000);
    const warning = logLines(join(workDir, 'coordinator.log')).filter((entry) => Array.isArray(entry.missing)).at(-1);
    expect(warning?.missing).toEqual(['site-01', 'site-02']);
    expect(warning?.msg).toContain('did not acknowledge federation:done within 2 s');
  }, 60_000);
});
