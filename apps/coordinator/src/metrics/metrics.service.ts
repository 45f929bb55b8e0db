import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import type { ClassName, MetricsReport } from '@covnet/protocol';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/config';
import { SiteMetricEntity } from '../persistence/entities';
import { Clock } from '../clock';
import { pooledAuc } from './pooled-auc';

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
  pooled: { valExams: number; auc: Record<ClassName, number | null> };
}

/** Stores sites' evaluation reports and pools them per round. */
@Injectable()
export class MetricsService {
  constructor(
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    @InjectRepository(SiteMetricEntity) private readonly metrics: Repository<SiteMetricEntity>,
    @Inject(Clock) private readonly clock: Clock,
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
      pooled: {
        valExams: rows.reduce((sum, row) => sum + row.valExams, 0),
        auc: pooledAuc(rows.map((row) => row.metrics)),
      },
    };
  }
}
