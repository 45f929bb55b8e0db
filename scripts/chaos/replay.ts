import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { DataSource } from 'typeorm';
import { decodeWeights, encodeWeights, sha256Hex, type NamedTensor } from '@covnet/protocol';
import type { AcknowledgedUpdate } from './light-agent';

/** Rows of one finished experiment in the coordinator's database. */
export interface FederationRecord {
  roundsDone: number;
  /** Accepted updates in the order of their row ids, which is the order they were accepted. */
  updates: { round: number; site: string; sha256: string; numExamples: number }[];
  /** Absolute checkpoint path and SHA-256 of each version, by the round that wrote it (0 for the initial model). */
  checkpoints: Map<number, { path: string; sha256: string }>;
}

/** Runs `work` on a read-only connection to a coordinator's SQLite file. */
export async function withDatabase<T>(databaseFile: string, work: (database: DataSource) => Promise<T>): Promise<T> {
  const database = new DataSource({ type: 'better-sqlite3', database: databaseFile, readonly: true });
  await database.initialize();
  try {
    return await work(database);
  } finally {
    await database.destroy();
  }
}

/**
 * Reads the rounds, updates and model versions of experiment `experiment` from a coordinator's SQLite file.
 * The database stores checkpoint paths relative to the data dir, the folder of the SQLite file.
 */
export function readRecord(databaseFile: string, experiment = 'default'): Promise<FederationRecord> {
  const dataDir = dirname(databaseFile);
  return withDatabase(databaseFile, async (database) => {
    const [done] = (await database.query(`SELECT COUNT(*) AS n FROM rounds WHERE experiment = ? AND state = 'done'`, [experiment])) as { n: number }[];
    const updates = (await database.query(
      'SELECT round, site, sha256, num_examples AS numExamples FROM updates WHERE experiment = ? ORDER BY id',
      [experiment],
    )) as FederationRecord['updates'];
    const versions = (await database.query('SELECT round, path, sha256 FROM model_versions WHERE experiment = ?', [experiment])) as {
      round: number;
      path: string;
      sha256: string;
    }[];
    return { roundsDone: done.n, updates, checkpoints: new Map(versions.map((v) => [v.round, { path: resolve(dataDir, v.path), sha256: v.sha256 }])) };
  });
}

/**
 * FedAvg written out once more, apart from the coordinator's code: each
 * value is the float64 sum of weight x value over the updates, in the given
 * order, divided by the total weight and rounded once to float32.
 */
export function replayFedAvg(updates: { tensors: NamedTensor[]; weight: number }[]): NamedTensor[] {
  const first = updates[0].tensors;
  return first.map((reference) => {
    const sum = new Float64Array(reference.data.length);
    let total = 0;
    for (const update of updates) {
      const tensor = update.tensors.find((t) => t.name === reference.name);
      if (!tensor) throw new Error(`an update lacks tensor ${reference.name}`);
      for (let i = 0; i < sum.length; i++) sum[i] += update.weight * tensor.data[i];
      total += update.weight;
    }
    return { name: reference.name, shape: [...reference.shape], data: Float32Array.from(sum, (value) => value / total) };
  });
}

export interface ReplayCheck {
  /** Acknowledged updates that the database does not record. */
  lost: AcknowledgedUpdate[];
  /** Rounds whose checkpoint equals the replay of their recorded updates, byte for byte. */
  matchingRounds: number[];
  /** Rounds whose checkpoint differs from the replay, or whose updates or checkpoint are missing, with the reason. */
  mismatches: string[];
}

/**
 * Compares the acknowledgements the sites received with the coordinator's
 * records: every acknowledged update must be a recorded one, and each round's
 * checkpoint must equal FedAvg over that round's recorded updates, replayed
 * from the bytes the sites sent (`sentDir/<sha256>.cvnw`).
 */
export function checkReplay(record: FederationRecord, acknowledged: AcknowledgedUpdate[], sentDir: string, meta: Record<string, string>): ReplayCheck {
  const recorded = new Set(record.updates.map((u) => `${u.round}/${u.site}/${u.sha256}`));
  const lost = acknowledged.filter((a) => !recorded.has(`${a.round}/${a.site}/${a.sha256}`));
  const matchingRounds: number[] = [];
  const mismatches: string[] = [];
  for (let round = 1; round <= record.roundsDone; round++) {
    const rows = record.updates.filter((u) => u.round === round);
    const checkpoint = record.checkpoints.get(round);
    if (!checkpoint) {
      mismatches.push(`round ${round}: no checkpoint recorded`);
      continue;
    }
    const missing = rows.filter((u) => !existsSync(join(sentDir, `${u.sha256}.cvnw`)));
    if (rows.length === 0 || missing.length > 0) {
      mismatches.push(`round ${round}: ${rows.length} updates recorded, ${missing.length} of them not among the bytes sent`);
      continue;
    }
    const replayed = replayFedAvg(rows.map((u) => ({ tensors: decodeWeights(readFileSync(join(sentDir, `${u.sha256}.cvnw`))).tensors, weight: u.numExamples })));
    const expected = sha256Hex(encodeWeights(replayed, 'float32', meta));
    const actual = sha256Hex(readFileSync(checkpoint.path));
    if (actual === expected && checkpoint.sha256 === expected) matchingRounds.push(round);
    else mismatches.push(`round ${round}: checkpoint SHA-256 ${actual}, replay ${expected}`);
  }
  return { lost, matchingRounds, mismatches };
}
