import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeWeights, type WireDtype } from '@covnet/protocol';
import { loadConfig, startCoordinator } from '../apps/coordinator/src';
import { resnet50Layout, syntheticUpdate } from './fedavg.bench';
import type { AgentsOptions, SiteRoundRecord } from './round-agents';

const SITES = 6;
const TRAINING_MS = 3000;

function progress(message: string): void {
  process.stderr.write(`round: ${message}\n`);
}

/** Runs the agents of round-agents.ts in a child process, so that their transfers do not share the coordinator's event loop. */
function agentsInChildProcess(options: AgentsOptions): Promise<SiteRoundRecord[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'round-agents.ts'), JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (data: Buffer) => (output += data.toString()));
    child.on('error', reject);
    child.on('close', (status) => {
      if (status === 0) resolve(JSON.parse(output) as SiteRoundRecord[]);
      else reject(new Error(`bench agents exited with status ${status}`));
    });
  });
}

interface FederationResult {
  /** Per round: wall time from the first train task to the first evaluate task, minus the slowest site's training, in seconds. */
  overheadS: number[];
  uploadBytes: number;
  downloadBytes: number;
}

/**
 * Runs a coordinator in this process and six agents in a child process on
 * 127.0.0.1 for `rounds` FedAvg rounds of the ResNet-50-sized model, with
 * updates sent as `dtype`.
 */
async function federation(dtype: WireDtype, rounds: number): Promise<FederationResult> {
  const dir = mkdtempSync(join(tmpdir(), 'covnet-bench-round-'));
  try {
    const tokens = Object.fromEntries(Array.from({ length: SITES }, (_, i) => [`site-${i + 1}`, randomBytes(18).toString('base64url')]));
    const sitesFile = join(dir, 'sites.json');
    writeFileSync(sitesFile, JSON.stringify({ sites: Object.entries(tokens).map(([name, token]) => ({ name, tokenSha256: createHash('sha256').update(token).digest('hex') })) }));
    const initialModelFile = join(dir, 'initial.cvnw');
    writeFileSync(initialModelFile, encodeWeights(syntheticUpdate(resnet50Layout(), 1), 'float32', { backbone: 'resnet50', inputSize: 224 }));

    const config = loadConfig(
      ['--port', '0', '--data-dir', join(dir, 'coordinator'), '--sites', sitesFile, '--initial-model', initialModelFile, '--rounds', String(rounds), '--min-sites', String(SITES), '--round-timeout-s', '600'],
      { LOG_LEVEL: 'warn', COVNET_ADMIN_TOKEN: randomBytes(18).toString('base64url') },
    );
    const coordinator = await startCoordinator(config);
    let records: SiteRoundRecord[];
    try {
      records = await agentsInChildProcess({ url: `http://127.0.0.1:${coordinator.port}`, tokens, initialModelFile, dtype, trainingMs: TRAINING_MS });
      await coordinator.done;
    } finally {
      await coordinator.close();
    }

    const overheadS: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      const ofRound = records.filter((r) => r.round === round);
      const started = Math.min(...ofRound.map((r) => r.trainTaskAt));
      const aggregated = Math.min(...ofRound.map((r) => r.evaluateTaskAt ?? Infinity));
      const slowestTraining = Math.max(...ofRound.map((r) => r.trainingMs));
      overheadS.push((aggregated - started - slowestTraining) / 1000);
      progress(`${dtype} round ${round}: ${((aggregated - started) / 1000).toFixed(2)} s wall, slowest training ${(slowestTraining / 1000).toFixed(2)} s`);
    }
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
    return { overheadS, uploadBytes: mean(records.map((r) => r.uploadBytes)), downloadBytes: mean(records.map((r) => r.downloadBytes)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Measures the coordinator's own time in a FedAvg round of six sites and the
 * ResNet-50-sized model on loopback, and the bytes each site sends per round
 * with float32 and float16 updates.
 */
export async function benchRound() {
  const fp32 = await federation('float32', 3);
  const fp16 = await federation('float16', 2);
  const sorted = [...fp32.overheadS].sort((a, b) => a - b);
  const overheadNote =
    `median of ${sorted.length} rounds (${fp32.overheadS.map((s) => s.toFixed(2)).join(', ')} s): wall time from train task to evaluate task ` +
    `minus the slowest site's training, a fixed ${TRAINING_MS / 1000} s sleep; includes the model downloads and update uploads`;
  const mb = (bytes: number) => bytes / 1e6;
  return [
    { name: 'round.resnet50x6.overhead_s', value: sorted[Math.floor(sorted.length / 2)], unit: 's', note: overheadNote },
    { name: 'transfer.resnet50.mb_per_site_round.fp32', value: mb(fp32.uploadBytes), unit: 'MB', note: `update upload; the global model download adds ${mb(fp32.downloadBytes).toFixed(1)} MB (float32)` },
    { name: 'transfer.resnet50.mb_per_site_round.fp16', value: mb(fp16.uploadBytes), unit: 'MB', note: `update upload; the global model download stays ${mb(fp16.downloadBytes).toFixed(1)} MB (float32)` },
  ];
}
