import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentProcess, CoordinatorProcess, LIGHT_MODEL_META, lightModel, prepareFederation } from './federation';
import { checkReplay, readRecord, withDatabase, type ReplayCheck } from './replay';
import type { AcknowledgedUpdate } from './light-agent';

export interface ChaosOptions {
  /** Seed of the schedule of kills; the same seed gives the same schedule, though timing still varies. */
  seed: number;
  sites: number;
  rounds: number;
  minSites: number;
  /** Float32 values in the light model, a multiple of 16. */
  parameters: number;
  /** Simulated local training time of each agent, in ms. */
  trainMs: number;
  roundTimeoutS: number;
  /** Number of kills; each is followed by a restart of the process killed. */
  events: number;
  /** Mean pause between two kills, in ms. */
  meanIntervalMs: number;
  /** Give up when the federation has not finished after this many seconds. */
  timeoutS: number;
  workDir: string;
}

export interface ChaosResult {
  roundsCompleted: number;
  updatesAccepted: number;
  acknowledged: number;
  duplicatesAcknowledged: number;
  coordinatorKills: number;
  agentKills: number;
  check: ReplayCheck;
  ok: boolean;
}

/**
 * Runs a federation of light agents on 127.0.0.1 and kills the coordinator
 * or an agent with SIGKILL at pseudo-random moments, restarting each
 * after a short pause. Once the coordinator has finished its rounds, checks
 * that no acknowledged update was lost and that every checkpoint equals the
 * FedAvg replay of its round's recorded updates.
 * @param print receives one line per action and the final check.
 */
export async function runChaos(options: ChaosOptions, print: (line: string) => void): Promise<ChaosResult> {
  const federation = await prepareFederation(options.workDir, options.sites, lightModel(options.parameters));
  const random = mulberry32(options.seed);
  const started = Date.now();
  const stamp = () => `t=${((Date.now() - started) / 1000).toFixed(2)}s`;
  const databaseFile = join(federation.dataDir, 'coordinator.sqlite');
  const coordinator = new CoordinatorProcess(federation, [
    '--rounds', String(options.rounds),
    '--min-sites', String(options.minSites),
    '--round-timeout-s', String(options.roundTimeoutS),
    '--epochs', '1', '--learning-rate', '0.01', '--batch-size', '2',
  ]);
  const agents = federation.sites.map((site, i) => new AgentProcess(federation, site, { trainExams: 1 + i, trainMs: options.trainMs, seed: options.seed }));

  print(`chaos run: seed ${options.seed}, ${options.sites} sites, ${options.rounds} rounds, up to ${options.events} kills, work dir ${options.workDir}`);
  await coordinator.start();
  for (const agent of agents) agent.start();

  let finished = false;
  let failure: Error | null = null;
  const watchCoordinator = () => {
    coordinator.exited.then((code) => {
      if (!coordinator.running) return;
      if (code === 0) finished = true;
      else failure = new Error(`coordinator exited with code ${code} on its own; see ${join(options.workDir, 'coordinator.log')}`);
    });
  };
  watchCoordinator();

  let coordinatorKills = 0;
  let agentKills = 0;
  const deadline = started + options.timeoutS * 1000;
  for (let event = 0; event < options.events && !finished && !failure; event++) {
    await sleep(options.meanIntervalMs * (0.5 + random()));
    if (finished || failure) break;
    const pause = 50 + Math.floor(random() * 450);
    if (random() < 0.4) {
      const state = await describeState(databaseFile);
      await coordinator.kill();
      coordinatorKills += 1;
      print(`${stamp()} kill -9 coordinator (${state}); restart in ${pause} ms`);
      await sleep(pause);
      await coordinator.start();
      watchCoordinator();
    } else {
      const agent = agents[Math.floor(random() * agents.length)];
      if (!agent.running) continue;
      await agent.kill();
      agentKills += 1;
      print(`${stamp()} kill -9 agent ${agent.site.name} (${await describeState(databaseFile)}); restart in ${pause} ms`);
      await sleep(pause);
      agent.start();
    }
  }
  while (!finished && !failure && Date.now() < deadline) await sleep(100);
  for (const agent of agents) await agent.kill();
  if (!finished) await coordinator.kill();
  if (failure) throw failure;
  if (!finished) throw new Error(`the federation did not finish within ${options.timeoutS} s; see the logs in ${options.workDir}`);
  print(`${stamp()} coordinator finished after ${coordinator.starts} starts`);

  const record = await readRecord(databaseFile);
  const acknowledged = readAcknowledged(federation.ackLog);
  const check = checkReplay(record, acknowledged, federation.sentDir, LIGHT_MODEL_META);
  const result: ChaosResult = {
    roundsCompleted: record.roundsDone,
    updatesAccepted: record.updates.length,
    acknowledged: acknowledged.length,
    duplicatesAcknowledged: acknowledged.filter((a) => a.duplicate).length,
    coordinatorKills,
    agentKills,
    check,
    ok: record.roundsDone === options.rounds && check.lost.length === 0 && check.mismatches.length === 0,
  };
  print(`rounds completed: ${result.roundsCompleted} of ${options.rounds}`);
  print(`kills: ${coordinatorKills} of the coordinator, ${agentKills} of agents`);
  print(`updates accepted: ${result.updatesAccepted} (acknowledgements received by agents: ${result.acknowledged}, ${result.duplicatesAcknowledged} of them as duplicates)`);
  print(`updates lost: ${check.lost.length}${check.lost.map((u) => ` ${u.site}@${u.round}`).join('')}`);
  const final = record.checkpoints.get(record.roundsDone);
  print(
    check.mismatches.length === 0
      ? `model equal to the replay: yes, ${check.matchingRounds.length} checkpoints byte for byte (final ${final?.sha256})`
      : `model equal to the replay: NO\n  ${check.mismatches.join('\n  ')}`,
  );
  print(result.ok ? 'chaos check passed' : 'chaos check FAILED');
  return result;
}

function readAcknowledged(file: string): AcknowledgedUpdate[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as AcknowledgedUpdate);
}

/** Returns the open round's number, state and recorded updates, for the log of a kill. */
async function describeState(databaseFile: string): Promise<string> {
  if (!existsSync(databaseFile)) return 'no database yet';
  try {
    return await withDatabase(databaseFile, async (database) => {
      const [round] = (await database.query('SELECT number, state FROM rounds ORDER BY number DESC LIMIT 1')) as { number: number; state: string }[];
      if (!round) return 'no round yet';
      const [stored] = (await database.query('SELECT COUNT(*) AS n FROM updates WHERE round = ?', [round.number])) as { n: number }[];
      return `round ${round.number} ${round.state}, ${stored.n} updates recorded`;
    });
  } catch (error) {
    return `state unreadable: ${(error as Error).message}`;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
