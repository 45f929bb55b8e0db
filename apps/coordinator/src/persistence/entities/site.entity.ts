import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';
import type { ClassCounts } from '@covnet/protocol';
import { jsonColumn } from '../json-column';

/** A hospital allowed to join (from the --sites file or `sites add`), with what it last reported in `site:hello`. */
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

  /** GPU name from the last `site:hello`; null on CPU backends. */
  @Column({ type: 'varchar', length: 128, nullable: true })
  gpu!: string | null;

  @Column({ name: 'agent_version', type: 'varchar', length: 64, nullable: true })
  agentVersion!: string | null;

  @Column({ name: 'train_exams', type: 'text', nullable: true, transformer: jsonColumn })
  trainExams!: ClassCounts | null;

  @Column({ name: 'val_exams', type: 'text', nullable: true, transformer: jsonColumn })
  valExams!: ClassCounts | null;

  /** ISO 8601 time the site was added; null for sites added before this column existed. */
  @Column({ name: 'added_at', type: 'varchar', length: 32, nullable: true })
  addedAt!: string | null;

  /** ISO 8601 time the site's token was revoked; a revoked site cannot connect. */
  @Column({ name: 'revoked_at', type: 'varchar', length: 32, nullable: true })
  revokedAt!: string | null;
}
