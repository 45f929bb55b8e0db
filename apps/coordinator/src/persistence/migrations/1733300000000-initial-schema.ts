import { Table, TableIndex, type MigrationInterface, type QueryRunner, type TableColumnOptions } from 'typeorm';

// Written with TypeORM's Table API rather than raw SQL so that one migration
// creates the same schema on SQLite and on PostgreSQL.

const id: TableColumnOptions = { name: 'id', type: 'integer', isPrimary: true, isGenerated: true, generationStrategy: 'increment' };
const experiment: TableColumnOptions = { name: 'experiment', type: 'varchar', length: '64' };
const timestamp = (name: string, isNullable = false): TableColumnOptions => ({ name, type: 'varchar', length: '32', isNullable });

/** Creates the five tables of the coordinator. */
export class InitialSchema1733300000000 implements MigrationInterface {
  name = 'InitialSchema1733300000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.createTable(
      new Table({
        name: 'sites',
        columns: [
          id,
          { name: 'name', type: 'varchar', length: '64', isUnique: true },
          { name: 'token_sha256', type: 'varchar', length: '64' },
          timestamp('last_seen_at', true),
          { name: 'backend', type: 'varchar', length: '64', isNullable: true },
          { name: 'agent_version', type: 'varchar', length: '64', isNullable: true },
          { name: 'train_exams', type: 'text', isNullable: true },
          { name: 'val_exams', type: 'text', isNullable: true },
        ],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'rounds',
        columns: [
          id,
          experiment,
          { name: 'number', type: 'integer' },
          { name: 'state', type: 'varchar', length: '32' },
          { name: 'model_version_in', type: 'integer' },
          { name: 'model_version_out', type: 'integer', isNullable: true },
          { name: 'participants', type: 'text' },
          { name: 'left_out', type: 'text' },
          timestamp('started_at'),
          timestamp('ended_at', true),
        ],
        indices: [new TableIndex({ name: 'uq_rounds_experiment_number', columnNames: ['experiment', 'number'], isUnique: true })],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'model_versions',
        columns: [
          id,
          experiment,
          { name: 'version', type: 'integer' },
          { name: 'round', type: 'integer' },
          { name: 'path', type: 'text' },
          { name: 'sha256', type: 'varchar', length: '64' },
          { name: 'byte_length', type: 'integer' },
          timestamp('created_at'),
        ],
        indices: [
          new TableIndex({ name: 'uq_model_versions_experiment_version', columnNames: ['experiment', 'version'], isUnique: true }),
        ],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'updates',
        columns: [
          id,
          experiment,
          { name: 'round', type: 'integer' },
          { name: 'site', type: 'varchar', length: '64' },
          { name: 'sha256', type: 'varchar', length: '64' },
          { name: 'num_examples', type: 'integer' },
          { name: 'train_loss', type: 'double precision' },
          timestamp('accepted_at'),
        ],
        indices: [
          new TableIndex({ name: 'uq_updates_experiment_round_site', columnNames: ['experiment', 'round', 'site'], isUnique: true }),
        ],
      }),
    );

    await queryRunner.createTable(
      new Table({
        name: 'site_metrics',
        columns: [
          id,
          experiment,
          { name: 'round', type: 'integer' },
          { name: 'model_version', type: 'integer' },
          { name: 'site', type: 'varchar', length: '64' },
          { name: 'train_exams', type: 'integer' },
          { name: 'val_exams', type: 'integer' },
          { name: 'auc_covid19', type: 'double precision', isNullable: true },
          { name: 'auc_cap', type: 'double precision', isNullable: true },
          { name: 'auc_non_pneumonia', type: 'double precision', isNullable: true },
          { name: 'loss', type: 'double precision', isNullable: true },
          { name: 'metrics', type: 'text' },
          timestamp('reported_at'),
        ],
        indices: [
          new TableIndex({ name: 'uq_site_metrics_experiment_round_site', columnNames: ['experiment', 'round', 'site'], isUnique: true }),
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of ['site_metrics', 'updates', 'model_versions', 'rounds', 'sites']) {
      await queryRunner.dropTable(table);
    }
  }
}
