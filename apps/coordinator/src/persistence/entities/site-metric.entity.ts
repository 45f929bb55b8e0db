import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';
import type { SiteMetrics } from '@covnet/protocol';
import { jsonColumn } from '../json-column';

/** One site's evaluation of one global model version on its own validation exams. */
@Entity({ name: 'site_metrics' })
@Index('uq_site_metrics_experiment_round_site', ['experiment', 'round', 'site'], { unique: true })
export class SiteMetricEntity {
  @PrimaryGeneratedColumn({ type: 'integer' })
  id!: number;

  @Column({ type: 'varchar', length: 64 })
  experiment!: string;

  @Column({ type: 'integer' })
  round!: number;

  @Column({ name: 'model_version', type: 'integer' })
  modelVersion!: number;

  @Column({ type: 'varchar', length: 64 })
  site!: string;

  @Column({ name: 'train_exams', type: 'integer' })
  trainExams!: number;

  @Column({ name: 'val_exams', type: 'integer' })
  valExams!: number;

  @Column({ name: 'auc_covid19', type: 'double precision', nullable: true })
  aucCovid19!: number | null;

  @Column({ name: 'auc_cap', type: 'double precision', nullable: true })
  aucCap!: number | null;

  @Column({ name: 'auc_non_pneumonia', type: 'double precision', nullable: true })
  aucNonPneumonia!: number | null;

  @Column({ type: 'double precision', nullable: true })
  loss!: number | null;

  /** The whole report's metrics, including the confusion matrix and score histograms. */
  @Column({ type: 'text', transformer: jsonColumn })
  metrics!: SiteMetrics;

  @Column({ name: 'reported_at', type: 'varchar', length: 32 })
  reportedAt!: string;
}
