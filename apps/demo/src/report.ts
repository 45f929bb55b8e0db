import { CLASS_NAMES, type PerClassAuc } from '@covnet/protocol';

export interface SiteRow {
  site: string;
  trainExams: number;
  valExams: number;
  auc: PerClassAuc;
}

export interface RoundReport {
  round: number;
  modelVersion: number;
  sites: SiteRow[];
  pooled: { valExams: number; auc: PerClassAuc };
}

export interface DemoReport {
  dataset: string;
  rounds: RoundReport[];
  comparison?: ComparisonRow[];
}

/** One site's COVID-19 AUC on its validation images under three training regimes. */
export interface ComparisonRow {
  site: string;
  valExams: number;
  federated: number | null;
  pooled: number | null;
  local: number | null;
}

function fmt(value: number | null): string {
  return value === null ? '   n/a' : value.toFixed(3).padStart(6);
}

/** Formats the per-site, per-round AUC table printed at the end of a demo. */
export function formatRoundTable(rounds: RoundReport[], classes: readonly string[] = CLASS_NAMES): string {
  const header = `${'site'.padEnd(12)} ${'train'.padStart(5)} ${'val'.padStart(4)}  ${classes.map((c) => `AUC ${c}`.padStart(17)).join(' ')}`;
  const lines: string[] = [];
  for (const round of rounds) {
    lines.push('', `round ${round.round} (global model v${round.modelVersion})`, header);
    for (const s of round.sites) {
      lines.push(
        `${s.site.padEnd(12)} ${String(s.trainExams).padStart(5)} ${String(s.valExams).padStart(4)}  ${classes
          .map((c) => fmt(s.auc[c as keyof PerClassAuc]).padStart(17))
          .join(' ')}`,
      );
    }
    const trainTotal = round.sites.reduce((n, s) => n + s.trainExams, 0);
    lines.push(
      `${'pooled'.padEnd(12)} ${String(trainTotal).padStart(5)} ${String(round.pooled.valExams).padStart(4)}  ${classes
        .map((c) => fmt(round.pooled.auc[c as keyof PerClassAuc]).padStart(17))
        .join(' ')}`,
    );
  }
  lines.push('', 'AUC is one-vs-rest on each site\'s own validation exams; n/a where a class is absent there.');
  lines.push('The pooled row combines the sites\' binned score histograms (200 bins), not per-exam scores.');
  return lines.join('\n');
}

/** Formats federated, pooled and local-only COVID-19 AUC side by side. */
export function formatComparison(rows: ComparisonRow[]): string {
  const lines = ['', 'COVID-19 AUC on each site\'s validation images, by how the model was trained:'];
  lines.push(`${'site'.padEnd(12)} ${'val'.padStart(4)}  ${'federated'.padStart(9)}  ${'pooled'.padStart(9)}  ${'local only'.padStart(10)}`);
  for (const r of rows) {
    lines.push(`${r.site.padEnd(12)} ${String(r.valExams).padStart(4)}  ${fmt(r.federated).padStart(9)}  ${fmt(r.pooled).padStart(9)}  ${fmt(r.local).padStart(10)}`);
  }
  return lines.join('\n');
}

/** Converts rounds to the JSON report's shape. */
export function toJsonReport(report: DemoReport): object {
  return {
    dataset: report.dataset,
    rounds: report.rounds.map((r) => ({
      round: r.round,
      modelVersion: r.modelVersion,
      sites: r.sites.map((s) => ({ site: s.site, trainExams: s.trainExams, valExams: s.valExams, auc: s.auc })),
      pooled: { valExams: r.pooled.valExams, auc: r.pooled.auc },
    })),
    ...(report.comparison ? { comparison: report.comparison } : {}),
  };
}
