import { readFile } from 'node:fs/promises';
import { decodeWeights } from '@covnet/protocol';
import { createCovnet, rocAuc, type Covnet } from '@covnet/model';
import { SiteArchive, type InputSpec, type PreparedExam } from '@covnet/site-agent';
import type { SiteArchivePlan } from './synthetic-consortium';

export interface BaselineResult {
  site: string;
  valExams: number;
  pooled: number | null;
  local: number | null;
}

interface TrainingPlan {
  initialModel: string;
  /** Epochs over the data; the federation's rounds times its local epochs, so every regime sees each image equally often. */
  epochs: number;
  learningRate: number;
  batchSize: number;
  seed: number;
}

function covidAuc(probs: number[][], exams: PreparedExam[]): number | null {
  return rocAuc(
    probs.map((p) => p[0]),
    exams.map((e) => e.label === 0),
  );
}

async function freshModel(initialModel: string): Promise<{ covnet: Covnet; spec: InputSpec }> {
  const decoded = decodeWeights(await readFile(initialModel));
  const spec = decoded.meta as unknown as InputSpec;
  const covnet = createCovnet({ backbone: spec.backbone as 'small', inputSize: spec.inputSize });
  covnet.setNamedWeights(decoded.tensors);
  return { covnet, spec };
}

/**
 * Trains the two reference models that a federation is judged against, from
 * the same initial weights: one on all sites' training images pooled in one
 * place, and one per site on that site's images alone. Each is scored by
 * COVID-19 AUC on every site's own validation images.
 */
export async function trainBaselines(sites: SiteArchivePlan[], plan: TrainingPlan): Promise<BaselineResult[]> {
  const { covnet: probe, spec } = await freshModel(plan.initialModel);
  probe.dispose();
  const prepared = [];
  for (const site of sites) {
    const archive = await SiteArchive.open(site.archive);
    prepared.push({ site: site.name, ...(await archive.prepare(spec)) });
  }
  const hyper = { epochs: plan.epochs, learningRate: plan.learningRate, batchSize: plan.batchSize, proximalMu: 0, seed: plan.seed };
  const asTraining = (exams: PreparedExam[]) => exams.map((e) => ({ input: e.input, label: e.label }));

  const pooled = await freshModel(plan.initialModel);
  const pooledAuc = new Map<string, number | null>();
  try {
    await pooled.covnet.trainLocal(asTraining(prepared.flatMap((p) => p.train)), hyper);
    for (const p of prepared) {
      const { probs } = await pooled.covnet.evaluate(asTraining(p.val));
      pooledAuc.set(p.site, covidAuc(probs, p.val));
    }
  } finally {
    pooled.covnet.dispose();
  }

  const results: BaselineResult[] = [];
  for (const p of prepared) {
    const local = await freshModel(plan.initialModel);
    try {
      await local.covnet.trainLocal(asTraining(p.train), hyper);
      const { probs } = await local.covnet.evaluate(asTraining(p.val));
      results.push({ site: p.site, valExams: p.val.length, pooled: pooledAuc.get(p.site) ?? null, local: covidAuc(probs, p.val) });
    } finally {
      local.covnet.dispose();
    }
  }
  return results;
}
