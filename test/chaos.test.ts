import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeWeights, sha256Hex, type NamedTensor } from '@covnet/protocol';
import { runChaos } from '../scripts/chaos/chaos';
import { checkReplay, replayFedAvg, type FederationRecord } from '../scripts/chaos/replay';

describe('chaos run', () => {
  const workDir = mkdtempSync(join(tmpdir(), 'covnet-chaos-test-'));

  afterAll(() => rmSync(workDir, { recursive: true, force: true }));

  it('loses no update and matches the replay', async () => {
    const lines: string[] = [];
    // Seed 5 kills the coordinator first, then an agent, then each once more. The kills
    // stop when the federation finishes, so its 6 rounds of 0.8 s of training outlast the
    // second kill, which comes at most 2 x 1.5 x 1.2 s plus a restart after the start.
    const result = await runChaos(
      { seed: 5, sites: 3, rounds: 6, minSites: 2, parameters: 200_000, trainMs: 800, roundTimeoutS: 5, events: 4, meanIntervalMs: 1200, timeoutS: 120, workDir: join(workDir, 'run') },
      (line) => lines.push(line),
    );
    const report = lines.join('\n');
    expect(result.coordinatorKills, report).toBeGreaterThanOrEqual(1);
    expect(result.agentKills, report).toBeGreaterThanOrEqual(1);
    expect(result.roundsCompleted, report).toBe(6);
    expect(result.check.lost, report).toEqual([]);
    expect(result.check.mismatches, report).toEqual([]);
    expect(result.check.matchingRounds, report).toEqual([1, 2, 3, 4, 5, 6]);
    // Every round closes with at least the quorum of updates.
    expect(result.updatesAccepted, report).toBeGreaterThanOrEqual(2 * 6);
    expect(result.ok, report).toBe(true);
    expect(report).toMatch(/updates lost: 0\n/);
    expect(report).toMatch(/model equal to the replay: yes/);
  });

  describe('replay check', () => {
    const tensors = (values: number[]): NamedTensor[] => [{ name: 'w', shape: [values.length], data: new Float32Array(values) }];
    const sentDir = join(workDir, 'sent');
    const update1 = encodeWeights(tensors([1, 2]));
    const update2 = encodeWeights(tensors([4, -2]));
    mkdirSync(sentDir, { recursive: true });
    writeFileSync(join(sentDir, `${sha256Hex(update1)}.cvnw`), update1);
    writeFileSync(join(sentDir, `${sha256Hex(update2)}.cvnw`), update2);
    // By hand: (1*[1, 2] + 3*[4, -2]) / 4 = [3.25, -1].
    const checkpoint = encodeWeights(tensors([3.25, -1]), 'float32', { backbone: 'light' });
    const checkpointPath = join(workDir, 'model-v1.cvnw');
    writeFileSync(checkpointPath, checkpoint);
    const record: FederationRecord = {
      roundsDone: 1,
      updates: [
        { round: 1, site: 'a', sha256: sha256Hex(update1), numExamples: 1 },
        { round: 1, site: 'b', sha256: sha256Hex(update2), numExamples: 3 },
      ],
      checkpoints: new Map([[1, { path: checkpointPath, sha256: sha256Hex(checkpoint) }]]),
    };

    it('matches a hand-computed FedAvg', () => {
      expect(Array.from(replayFedAvg([{ tensors: tensors([1, 2]), weight: 1 }, { tensors: tensors([4, -2]), weight: 3 }])[0].data)).toEqual([3.25, -1]);
      const check = checkReplay(record, [], sentDir, { backbone: 'light' });
      expect(check).toEqual({ lost: [], matchingRounds: [1], mismatches: [] });
    });

    it('reports an acknowledged update the database lacks', () => {
      const acknowledged = { site: 'c', round: 1, sha256: 'f'.repeat(64), numExamples: 2, duplicate: false };
      expect(checkReplay(record, [acknowledged], sentDir, { backbone: 'light' }).lost).toEqual([acknowledged]);
    });

    it('reports a checkpoint that differs from the replay', () => {
      const counted = { ...record, updates: [...record.updates, record.updates[0]] };
      expect(checkReplay(counted, [], sentDir, { backbone: 'light' }).mismatches).toHaveLength(1);
    });
  });
});
