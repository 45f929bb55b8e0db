import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/** A site's accepted weight update; the weights themselves live only in the round's running sum. */
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
}
