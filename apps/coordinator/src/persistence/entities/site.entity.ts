import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';
import type { ClassCounts } from '@covnet/protocol';
import { jsonColumn } from '../json-column';

/** A hospital allowed to join, from the --sites file, with what it last reported in `site:hello`. */
@Entity({ name: 'sites' })
export class SiteEntity {
  @PrimaryGeneratedColumn({ type: 'integer' })
  id!: number;

  @Column({ type: 'varchar', length: 64, unique: true })
  name!: string;

  /** Lowercase hex SHA-256 of the site's token; the token itself is never stored. */
  @Column({ name: 'token_sha256', type: 'varchar', length: 64 })
  tokenSha256!: string;

  /** ISO 8601 time of the last connection or message. */
  @Column({ name: 'last_seen_at', type: 'varchar', length: 32, nullable: true })
  lastSeenAt!: string | null;

  @Column({ type: 'varchar', length: 64, nullable: true })
  backend!: string | null;

  @Column({ name: 'agent_version', type: 'varchar', length: 64, nullable: true })
  agentVersion!: string | null;

  @Column({ name: 'train_exams', type: 'text', nullable: true, transformer: jsonColumn })
  trainExams!: ClassCounts | null;

  @Column({ name: 'val_exams', type: 'text', nullable: true, transformer: jsonColumn })
  valExams!: ClassCounts | null;
}
