import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { CLASS_NAMES, type ClassName, type MetricsReport } from '@covnet/protocol';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/config';
import { SiteMetricEntity } from '../persistence/entities';
import { CoordinatorEvents } from '../events/coordinator-events';
import { Clock } from '../clock';
import { pooledAucWithInterval, type PooledClassAuc } from './pooled-auc';

export interface SiteMetricsView {
  site: string;
  trainExams: number;
  valExams: number;
  auc: Record<ClassName, number | null>;
  loss: number | null;
  confusion: number[][];
}

export interface RoundMetricsView {
  round: number;
  modelVersion: number | null;
  sites: SiteMetricsView[];
  pooled: { valExams: number; auc: Record<ClassName, number | null>; interval: Record<ClassName, { low: number | null; high: number | null }> };
}

/** Per-class AUC by round: one series per site and the pooled series with its confidence band. */
export interface AucSeriesView {
  rounds: number[];
  classes: Record<
    ClassName,
    {
      sites: { site: string; points: { round: number; auc: number | null }[] }[];
      pooled: ({ round: number } & PooledClassAuc)[];
    }
  >;
}

/** A model version's pooled validation AUC, averaged over the classes that have one. */
export interface VersionScore {
  round: number;
  modelVersion: number;
  meanPooledAuc: number | null;
}

/** Stores sites' evaluation reports and pools them per round. */
@Injectable()
export class MetricsService {
  constructor(
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    @InjectRepository(SiteMetricEntity) private readonly metrics: Repository<SiteMetricEntity>,
    @Inject(Clock) private readonly clock: Clock,
    @Inject(CoordinatorEvents) private readonly events: CoordinatorEvents,
  ) {}

  /**
   * Stores a site's report, replacing an earlier one of the same round: a site
   * that resends after a lost acknowledgement sends the same figures again.
   */
  async store(site: string, report: MetricsReport): Promise<void> {
    const experiment = this.config.experiment;
    const row = (await this.metrics.findOne({ where: { experiment, round: report.round, site } })) ?? this.metrics.create({ experiment, round: report.round, site });
    Object.assign(row, {
      modelVersion: report.modelVersion,
      trainExams: report.trainExams,
      valExams: report.metrics.valExams,
      aucCovid19: report.metrics.auc.covid19,
      aucCap: report.metrics.auc.cap,
      aucNonPneumonia: report.metrics.auc.non_pneumonia,
      loss: report.metrics.loss,
      metrics: report.metrics,
      reportedAt: this.clock.nowIso(),
    });
    await this.metrics.save(row);
    this.events.changed('metrics');
  }

  async forRound(round: number, modelVersion: number | null): Promise<RoundMetricsView> {
    const rows = await this.metrics.find({ where: { experiment: this.config.experiment, round }, order: { site: 'ASC' } });
    return {
      round,
      modelVersion,
      sites: rows.map((row) => ({
        site: row.site,
        trainExams: row.trainExams,
        valExams: row.valExams,
        auc: { covid19: row.aucCovid19, cap: row.aucCap, non_pneumonia: row.aucNonPneumonia },
        loss: row.loss,
        confusion: row.metrics.confusion,
      })),
      pooled: pooledView(rows),
    };
  }

  /** Every round's per-site and pooled AUC for each class, for the dashboard's charts. */
  async aucSeries(): Promise<AucSeriesView> {
    const rows = await this.metrics.find({ where: { experiment: this.config.experiment }, order: { round: 'ASC', site: 'ASC' } });
    const byRound = groupByRound(rows);
    const rounds = [...byRound.keys()];
    const siteNames = [...new Set(rows.map((row) => row.site))].sort();
    const classes = {} as AucSeriesView['classes'];
    for (const name of CLASS_NAMES) {
      classes[name] = {
        sites: siteNames.map((site) => ({
          site,
          points: rows.filter((row) => row.site === site).map((row) => ({ round: row.round, auc: row.metrics.auc[name] })),
        })),
        pooled: rounds.map((round) => ({ round, ...pooledAucWithInterval(byRound.get(round)!.map((row) => row.metrics))[name] })),
      };
    }
    return { rounds, classes };
  }

  /**
   * Scores every evaluated model version by its pooled validation AUC, the
   * mean over the classes whose pooled AUC is defined, in round order.
   */
  async versionScores(): Promise<VersionScore[]> {
    const rows = await this.metrics.find({ where: { experiment: this.config.experiment }, order: { round: 'ASC', site: 'ASC' } });
    return [...groupByRound(rows)].map(([round, group]) => {
      const pooled = pooledAucWithInterval(group.map((row) => row.metrics));
      const defined = CLASS_NAMES.map((name) => pooled[name].auc).filter((auc): auc is number => auc !== null);
      return {
        round,
        modelVersion: group[0].modelVersion,
        meanPooledAuc: defined.length === 0 ? null : defined.reduce((a, b) => a + b, 0) / defined.length,
      };
    });
  }

  /** The version with the highest mean pooled validation AUC; the earlier one wins a tie. Null before any evaluation. */
  async bestVersion(): Promise<VersionScore | null> {
    let best: VersionScore | null = null;
    for (const score of await this.versionScores()) {
      if (score.meanPooledAuc !== null && (best === null || score.meanPooledAuc > best.meanPooledAuc!)) best = score;
    }
    return best;
  }
}

function groupByRound(rows: SiteMetricEntity[]): Map<number, SiteMetricEntity[]> {
  const byRound = new Map<number, SiteMetricEntity[]>();
  for (const row of rows) {
    const group = byRound.get(row.round) ?? [];
    group.push(row);
    byRound.set(row.round, group);
  }
  return byRound;
}

function pooledView(rows: SiteMetricEntity[]): RoundMetricsView['pooled'] {
  const pooled = pooledAucWithInterval(rows.map((row) => row.metrics));
  const auc = {} as Record<ClassName, number | null>;
  const interval = {} as Record<ClassName, { low: number | null; high: number | null }>;
  for (const name of CLASS_NAMES) {
    auc[name] = pooled[name].auc;
    interval[name] = { low: pooled[name].low, high: pooled[name].high };
  }
  return { valExams: rows.reduce((sum, row) => sum + row.valExams, 0), auc, interval };
}
