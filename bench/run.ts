import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { benchCovnet } from './covnet.bench';
import { benchFedAvg } from './fedavg.bench';
import { benchIngest } from './ingest.bench';
import { benchRound } from './round.bench';

/** One measured figure; `name` is stable and listed in bench/README.md. */
export interface BenchFigure {
  name: string;
  value: number;
  unit: string;
  cores: number;
  note?: string;
}

const SUITES: Record<string, () => Promise<Omit<BenchFigure, 'cores'>[]>> = {
  fedavg: benchFedAvg,
  round: benchRound,
  ingest: benchIngest,
  covnet: benchCovnet,
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { json: { type: 'string' }, only: { type: 'string' } },
    strict: true,
  });
  const cores = cpus().length;
  const figures: BenchFigure[] = [];
  for (const [suite, run] of Object.entries(SUITES)) {
    if (values.only && values.only !== suite) continue;
    process.stderr.write(`running ${suite} ...\n`);
    for (const figure of await run()) figures.push({ ...figure, cores });
  }
  const width = Math.max(...figures.map((f) => f.name.length));
  process.stdout.write(`${'figure'.padEnd(width)}  ${'value'.padStart(10)}  unit      cores\n`);
  for (const f of figures) {
    process.stdout.write(`${f.name.padEnd(width)}  ${f.value.toFixed(3).padStart(10)}  ${f.unit.padEnd(8)}  ${f.cores}${f.note ? `   ${f.note}` : ''}\n`);
  }
  if (values.json) writeFileSync(values.json, `${JSON.stringify(figures, null, 2)}\n`);
}

main().catch((error: Error) => {
  process.stderr.write(`bench failed: ${error.stack}\n`);
  process.exit(1);
});
