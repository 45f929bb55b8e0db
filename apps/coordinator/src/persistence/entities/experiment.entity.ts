import { Column, Entity, PrimaryColumn } from 'typeorm';
import { bigintColumn } from '../numeric-column';
import { jsonColumn } from '../json-column';
import type { ExperimentSettings } from '../../experiments/experiment-settings';
import type { ExperimentState } from '../../experiments/experiment-state';

/** An experiment: its settings and where it stands. Its rounds and model versions refer to it by name. */
@Entity({ name: 'experiments' })
export class ExperimentEntity {
  @PrimaryColumn({ type: 'bigint', generated: 'increment', transformer: bigintColumn })
  id!: number;

  @Column({ type: 'varchar', length: 64, unique: true })
  name!: string;

  @Column({ type: 'varchar', length: 16 })
  state!: ExperimentState;

  @Column({ type: 'text', transformer: jsonColumn })
  settings!: ExperimentSettings;

  @Column({ name: 'created_at', type: 'varchar', length: 32 })
  createdAt!: string;

  @Column({ name: 'updated_at', type: 'varchar', length: 32 })
  updatedAt!: string;
}
