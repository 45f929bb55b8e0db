import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runChaos } from './chaos';

const HELP = `npm run chaos -- [options]

Runs a federation of light agents on 127.0.0.1 and kills the coordinator and
agents with SIGKILL at pseudo-random moments, then checks that no
acknowledged update was lost and that every checkpoint equals the FedAvg
replay of its round's recorded updates. Exits 1 when the check fails.

  --seed N           seed of the schedule of kills (default 1)
  --sites N          number of sites (default 6)
  --rounds N         number of rounds (default 8)
  --min-sites N      quorum of each round (default 3)
  --events N         number of kills (default 12)
  --interval-ms N    mean pause between kills in ms (default 1500)
  --parameters N     float32 values in the light model, a multiple of 16 (default 200000, two upload chunks)
  --train-ms N       simulated local training time in ms (default 400)
  --work-dir DIR     where logs, database and checkpoints go (default a new folder in the system temp dir)
`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string', default: '1' },
      sites: { type: 'string', default: '6' },
      rounds: { type: 'string', default: '8' },
      'min-sites': { type: 'string', default: '3' },
      events: { type: 'string', default: '12' },
      'interval-ms': { type: 'string', default: '1500' },
      parameters: { type: 'string', default: '200000' },
      'train-ms': { type: 'string', default: '400' },
      'work-dir': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const integer = (name: keyof typeof values) => {
    const value = Number(values[name]);
    if (!Number.isInteger(value) || value < 0) throw new Error(`--${name} must be a non-negative integer, got ${values[name]}`);
    return value;
  };
  const result = await runChaos(
    {
      seed: integer('seed'),
      sites: integer('sites'),
      rounds: integer('rounds'),
      minSites: integer('min-sites'),
      events: integer('events'),
      meanIntervalMs: integer('interval-ms'),
      parameters: integer('parameters'),
      trainMs: integer('train-ms'),
      roundTimeoutS: 5,
      timeoutS: 600,
      workDir: values['work-dir'] ? resolve(values['work-dir']) : mkdtempSync(join(tmpdir(), 'covnet-chaos-')),
    },
    (line) => process.stdout.write(`${line}\n`),
  );
  return result.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`chaos: ${error.message}\n`);
    process.exit(1);
  },
);
