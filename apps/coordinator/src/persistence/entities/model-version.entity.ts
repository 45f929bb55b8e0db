import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/** One global model version and its checkpoint file. Version 0 is the initial model. */
@Entity({ name: 'model_versions' })
@Index('uq_model_versions_experiment_version', ['experiment', 'version'], { unique: true })
export class ModelVersionEntity {
  @PrimaryGeneratedColumn({ type: 'integer' })
  id!: number;

  @Column({ type: 'varchar', length: 64 })
  experiment!: string;

  @Column({ type: 'integer' })
  version!: number;

  /** Round whose aggregation produced this version; 0 for the initial model. */
  @Column({ type: 'integer' })
  round!: number;

  @Column({ type: 'text' })
  path!: string;

  @Column({ type: 'varchar', length: 64 })
  sha256!: string;

  @Column({ name: 'byte_length', type: 'integer' })
  byteLength!: number;

  /**
   * File of the server optimizer's state after this version (FedAdam's
   * moments), relative to the data dir. Null for strategies without state, for
   * version 0, and once the next version's state is recorded.
   */
  @Column({ name: 'optimizer_state_path', type: 'text', nullable: true })
  optimizerStatePath!: string | null;

  @Column({ name: 'optimizer_state_sha256', type: 'varchar', length: 64, nullable: true })
  optimizerStateSha256!: string | null;

  @Column({ name: 'created_at', type: 'varchar', length: 32 })
  createdAt!: string;
}
