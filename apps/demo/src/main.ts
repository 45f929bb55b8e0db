import './quiet-logs';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend } from '@covnet/model';
import { trainBaselines } from './baselines';
import { assignCovidCtSites, readCovidCtLabels, writeCovidCtArchives } from './covid-ct-consortium';
import { REPO_ROOT, runToCompletion } from './processes';
import { formatComparison, formatRoundTable, toJsonReport, type ComparisonRow, type DemoReport } from './report';
import { runFederation } from './run-federation';
import { writeSyntheticConsortium, type SiteArchivePlan } from './synthetic-consortium';
import { prepareWorkDir } from './work-dir';

const USAGE = `usage: npm run demo -- [--dataset synthetic|covid-ct] [--report FILE] [--work-dir DIR] [--seed N] [--rounds N] [--timeout-s S]
  synthetic (default): six hospitals with synthetic chest CT written as DICOM
  covid-ct: the real COVID-CT images (one-slice exams) split across six hospitals`;

const DEFAULT_COVID_CT_DIR = join(REPO_ROOT, '..', 'shared', 'data', 'covid-ct-ucsd');

/** Dataset-specific choices: model input geometry and local training. */
const SETTINGS = {
  synthetic: { inputSize: 64, maxSlices: 16, epochs: 3, learningRate: 0.002, batchSize: 4 },
  'covid-ct': { inputSize: 96, maxSlices: 1, epochs: 2, learningRate: 0.001, batchSize: 8 },
} as const;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dataset: { type: 'string', default: 'synthetic' },
      report: { type: 'string' },
      'work-dir': { type: 'string' },
      'data-dir': { type: 'string', default: process.env.COVNET_COVID_CT_DIR ?? DEFAULT_COVID_CT_DIR },
      seed: { type: 'string', default: '7' },
      rounds: { type: 'string', default: '3' },
      'timeout-s': { type: 'string', default: '900' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const dataset = values.dataset as keyof typeof SETTINGS;
  if (!(dataset in SETTINGS)) throw new Error(`--dataset must be synthetic or covid-ct, got "${values.dataset}"\n${USAGE}`);
  const seed = Number(values.seed);
  const rounds = Number(values.rounds);
  const timeoutSeconds = Number(values['timeout-s']);
  if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got "${values.seed}"`);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got "${values.rounds}"`);
  if (!(timeoutSeconds > 0)) throw new Error(`--timeout-s must be a positive number of seconds, got "${values['timeout-s']}"`);
  const dataDir = resolve(values['data-dir']);
  if (dataset === 'covid-ct' && !existsSync(join(dataDir, 'labels.csv'))) {
    throw new Error(`COVID-CT data set not found at ${dataDir} (expected labels.csv there); pass --data-dir DIR`);
  }
  const settings = SETTINGS[dataset];
  const workDir = resolve(values['work-dir'] ?? join(REPO_ROOT, 'var', `demo-${dataset}`));
  const started = Date.now();
  const say = (message: string) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);

  await prepareWorkDir(workDir);
  say(`work folder ${workDir}, ${cpus().length} cores`);

  let sites: SiteArchivePlan[];
  if (dataset === 'synthetic') {
    sites = await writeSyntheticConsortium(workDir, seed);
    say(`wrote six synthetic DICOM archives`);
  } else {
    const assignments = assignCovidCtSites(readCovidCtLabels(dataDir), seed);
    sites = await writeCovidCtArchives(workDir, dataDir, assignments);
    for (const a of assignments) {
      const covid = (list: typeof a.train) => list.filter((i) => i.label === 'covid19').length;
      say(`${a.name}: ${a.train.length} train (${covid(a.train)} COVID-19), ${a.val.length} val (${covid(a.val)} COVID-19)`);
    }
  }

  const initialModel = join(workDir, 'initial-model.cvnw');
  await runToCompletion(
    'init-model',
    'apps/site-agent/src/main.ts',
    ['init-model', '--out', initialModel, '--backbone', 'small', '--input-size', String(settings.inputSize), '--max-slices', String(settings.maxSlices), '--seed', String(seed)],
    join(workDir, 'init-model.log'),
  );
  say(`initial global model written (small backbone, ${settings.inputSize}x${settings.inputSize}, up to ${settings.maxSlices} slices)`);

  const federation = await runFederation({
    workDir,
    sites,
    initialModel,
    rounds,
    epochs: settings.epochs,
    learningRate: settings.learningRate,
    batchSize: settings.batchSize,
    seed,
    timeoutSeconds,
    onProgress: say,
  });
  const report: DemoReport = { dataset, rounds: federation.rounds };
  process.stdout.write(`${formatRoundTable(federation.rounds)}\n`);

  if (dataset === 'covid-ct') {
    say('training the reference models: all sites pooled, and each site alone');
    const backend = await initBackend();
    say(`reference models train on the ${backend.backend} backend`);
    const baselines = await trainBaselines(sites, {
      initialModel,
      epochs: rounds * settings.epochs,
      learningRate: settings.learningRate,
      batchSize: settings.batchSize,
      seed,
    });
    const last = federation.rounds[federation.rounds.length - 1];
    report.comparison = baselines.map<ComparisonRow>((b) => ({
      site: b.site,
      valExams: b.valExams,
      federated: last.sites.find((s) => s.site === b.site)?.auc.covid19 ?? null,
      pooled: b.pooled,
      local: b.local,
    }));
    process.stdout.write(`${formatComparison(report.comparison)}\n`);
  }

  if (values.report) {
    await writeFile(resolve(values.report), `${JSON.stringify(toJsonReport(report), null, 2)}\n`);
    say(`report written to ${resolve(values.report)}`);
  }
  say('done');
}

main().then(
  () => process.exit(0),
  (error: Error) => {
    process.stderr.write(`demo failed: ${error.message}\n`);
    process.exit(1);
  },
);
