import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeWeights, type NamedTensor } from '@covnet/protocol';
import { loadConfig, startCoordinator, type FederationSummary, type RunningCoordinator } from '@covnet/coordinator';
import { LIGHT_MODEL_META, lightModel, prepareFederation, ADMIN_TOKEN, type LocalFederation } from '../scripts/chaos/federation';
import { LightAgent } from '../scripts/chaos/light-agent';
import { checkReplay, readRecord, replayFedAvg, type FederationRecord } from '../scripts/chaos/replay';

const SITES = 50;
const ROUNDS = 10;
// 65,536 float32 values: 256 KiB, one upload chunk.
const PARAMETERS = 65_536;
const MODEL_BYTES = PARAMETERS * 4;

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

/** Heap and off-heap bytes (ArrayBuffers included) still reachable after two full collections. */
function retainedBytes(): number {
  collectGarbage();
  collectGarbage();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.external;
}

/** Distance between two float32 values in units in the last place: 0 when equal, 1 for neighbours. */
function ulpDistance(a: number, b: number): number {
  const bits = new Int32Array(new Float32Array([a, b]).buffer);
  // Maps the sign-magnitude bit patterns onto one ordered integer line.
  const ordered = (x: number) => (x < 0 ? -(x & 0x7fffffff) : x);
  return Math.abs(ordered(bits[0]) - ordered(bits[1]));
}

function shuffled<T>(items: T[], seed: number): T[] {
  const copy = [...items];
  let state = seed;
  for (let i = copy.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2147483648;
    const j = state % (i + 1);
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy;
}

describe('federation of 50 light agents', () => {
  let workDir = '';
  let federation: LocalFederation;
  let coordinator: RunningCoordinator;
  let summary: FederationSummary;
  let record: FederationRecord;
  const agents: LightAgent[] = [];
  const memory = { afterFirstFive: 0, afterFortyNine: 0 };

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'covnet-load-'));
    federation = await prepareFederation(workDir, SITES, lightModel(PARAMETERS));
    const config = loadConfig(
      ['--port', String(federation.port), '--data-dir', federation.dataDir, '--sites', federation.sitesFile, '--initial-model', federation.initialModelFile,
        '--rounds', String(ROUNDS), '--min-sites', String(SITES), '--round-timeout-s', '60', '--epochs', '1', '--learning-rate', '0.01', '--batch-size', '2'],
      { COVNET_ADMIN_TOKEN: ADMIN_TOKEN, LOG_LEVEL: 'warn' },
    );
    coordinator = await startCoordinator(config);

    // In round 1 the agents are let through in three groups (5, 44, 1), so
    // that memory is measured with 5 and with 49 updates folded into the open round.
    const gates = [0, 1, 2].map(() => {
      let open: () => void = () => {};
      const opened = new Promise<void>((resolve) => (open = resolve));
      return { open, opened };
    });
    const groupOf = (i: number) => {
      if (i < 5) return 0;
      if (i < SITES - 1) return 1;
      return 2;
    };
    for (let i = 0; i < SITES; i++) {
      agents.push(
        new LightAgent({
          url: federation.url,
          token: federation.sites[i].token,
          site: federation.sites[i].name,
          trainExams: 1 + (i % 7),
          // Uneven training times make the arrival order differ from round to round.
          trainMs: (i * 37) % 50,
          seed: 11,
          sentDir: federation.sentDir,
          beforeTask: (task, round) => (task === 'train' && round === 1 ? gates[groupOf(i)].opened : Promise.resolve()),
        }),
      );
    }
    const finished = Promise.all(agents.map((agent) => agent.run()));
    const accepted = () => agents.reduce((n, agent) => n + agent.acknowledged.length, 0);
    const until = async (count: number) => {
      while (accepted() < count) await new Promise((resolve) => setTimeout(resolve, 20));
    };
    gates[0].open();
    await until(5);
    memory.afterFirstFive = retainedBytes();
    gates[1].open();
    await until(SITES - 1);
    memory.afterFortyNine = retainedBytes();
    gates[2].open();
    await finished;
    summary = await coordinator.done;
    record = await readRecord(join(federation.dataDir, 'coordinator.sqlite'));
  }, 120_000);

  afterAll(async () => {
    for (const agent of agents) agent.close();
    await coordinator?.close();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('completes every round with every site', () => {
    expect(summary.rounds).toBe(ROUNDS);
    expect(record.roundsDone).toBe(ROUNDS);
    expect(record.updates).toHaveLength(SITES * ROUNDS);
  });

  it('accounts for every update', () => {
    const recorded = new Set(record.updates.map((u) => `${u.round}/${u.site}/${u.sha256}`));
    expect(recorded.size).toBe(SITES * ROUNDS);
    for (const agent of agents) {
      expect(agent.acknowledged.map((a) => a.round)).toEqual(Array.from({ length: ROUNDS }, (_, i) => i + 1));
      for (const update of agent.acknowledged) {
        expect(update.duplicate).toBe(false);
        expect(recorded.has(`${update.round}/${update.site}/${update.sha256}`), `${update.site} round ${update.round}`).toBe(true);
      }
    }
  });

  it('writes each checkpoint as the replay in acceptance order', () => {
    const check = checkReplay(record, [], federation.sentDir, LIGHT_MODEL_META);
    expect(check.mismatches).toEqual([]);
    expect(check.matchingRounds).toEqual(Array.from({ length: ROUNDS }, (_, i) => i + 1));
  });

  it('differs by at most 1 ulp under another arrival order', () => {
    for (let round = 1; round <= ROUNDS; round++) {
      const rows = record.updates.filter((u) => u.round === round);
      const updates = rows.map((u) => ({ tensors: decodeWeights(readFileSync(join(federation.sentDir, `${u.sha256}.cvnw`))).tensors, weight: u.numExamples }));
      const checkpoint = decodeWeights(readFileSync(record.checkpoints.get(round)!.path)).tensors;
      for (const order of [[...updates].reverse(), shuffled(updates, round)]) {
        const replayed: NamedTensor[] = replayFedAvg(order);
        let worst = 0;
        for (let k = 0; k < checkpoint.length; k++) {
          const expected = checkpoint[k].data;
          const actual = replayed.find((t) => t.name === checkpoint[k].name)!.data;
          for (let i = 0; i < expected.length; i++) worst = Math.max(worst, ulpDistance(expected[i], actual[i]));
        }
        expect(worst, `round ${round}`).toBeLessThanOrEqual(1);
      }
    }
  });

  it('keeps memory flat as more sites report', () => {
    // Holding each update until the round closes would retain 44 more
    // models between the two measurements; folding keeps none of them.
    const growth = memory.afterFortyNine - memory.afterFirstFive;
    expect(growth, `retained ${(growth / 1024).toFixed(0)} KiB more after 49 updates than after 5`).toBeLessThan(0.25 * 44 * MODEL_BYTES);
  });
});
