import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';
import { jsonColumn } from '../json-column';
import type { ErrorCode } from '@covnet/protocol';
import type { RoundState } from '../../rounds/round-state';

/** Reason a participant's update is missing from a round's aggregate. */
export type LeftOutReason = 'disconnected' | 'missed_deadline' | 'revoked' | 'rejected';

export interface LeftOutSite {
  site: string;
  reason: LeftOutReason;
  /** With reason `rejected`: the code sent to the site for its last rejected update. */
  code?: ErrorCode;
}

/** One training round of an experiment, updated on every state transition. */
@Entity({ name: 'rounds' })
@Index('uq_rounds_experiment_number', ['experiment', 'number'], { unique: true })
export class RoundEntity {
  @PrimaryGeneratedColumn({ type: 'integer' })
  id!: number;

  @Column({ type: 'varchar', length: 64 })
  experiment!: string;

  @Column({ type: 'integer' })
  number!: number;

  @Column({ type: 'varchar', length: 32 })
  state!: RoundState;

  /** Global model version the sites train from. */
  @Column({ name: 'model_version_in', type: 'integer' })
  modelVersionIn!: number;

  /** Version written by this round's aggregation; null until then. */
  @Column({ name: 'model_version_out', type: 'integer', nullable: true })
  modelVersionOut!: number | null;

  @Column({ type: 'text', transformer: jsonColumn })
  participants!: string[];

  @Column({ name: 'left_out', type: 'text', transformer: jsonColumn })
  leftOut!: LeftOutSite[];

  @Column({ name: 'started_at', type: 'varchar', length: 32 })
  startedAt!: string;

  @Column({ name: 'ended_at', type: 'varchar', length: 32, nullable: true })
  endedAt!: string | null;
}
