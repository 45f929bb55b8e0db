import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/**
 * A site's accepted weight update. The update is identified by experiment,
 * round, site and SHA-256; its weights are in the file at `payloadPath` until
 * the round's checkpoint is recorded, and only in that checkpoint after.
 * Rows of one experiment are numbered by `id` in the order they were accepted.
 */
@Entity({ name: 'updates' })
@Index('uq_updates_experiment_round_site', ['experiment', 'round', 'site'], { unique: true })
export class UpdateEntity {
  @PrimaryGeneratedColumn({ type: 'integer' })
  id!: number;

  @Column({ type: 'varchar', length: 64 })
  experiment!: string;

  @Column({ type: 'integer' })
  round!: number;

  @Column({ type: 'varchar', length: 64 })
  site!: string;

  @Column({ type: 'varchar', length: 64 })
  sha256!: string;

  @Column({ name: 'num_examples', type: 'integer' })
  numExamples!: number;

  @Column({ name: 'train_loss', type: 'double precision' })
  trainLoss!: number;

  @Column({ name: 'accepted_at', type: 'varchar', length: 32 })
  acceptedAt!: string;

  /** File of the update's payload; null once the round's checkpoint is recorded. */
  @Column({ name: 'payload_path', type: 'text', nullable: true })
  payloadPath!: string | null;
}
