import { Table, TableColumn, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * Adds what site management and experiments need: the revocation time and
 * creation time of each site, and the `experiments` table with the state and
 * settings of every experiment.
 */
export class SiteRevocationAndExperiments1733400000000 implements MigrationInterface {
  name = 'SiteRevocationAndExperiments1733400000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumns('sites', [
      new TableColumn({ name: 'added_at', type: 'varchar', length: '32', isNullable: true }),
      new TableColumn({ name: 'revoked_at', type: 'varchar', length: '32', isNullable: true }),
    ]);

    await queryRunner.createTable(
      new Table({
        name: 'experiments',
        columns: [
          // bigint on PostgreSQL so that ids never run out. SQLite's INTEGER is
          // already 64-bit, and SQLite allows AUTOINCREMENT only on INTEGER.
          {
            name: 'id',
            type: queryRunner.connection.driver.options.type === 'postgres' ? 'bigint' : 'integer',
            isPrimary: true,
            isGenerated: true,
            generationStrategy: 'increment',
          },
          { name: 'name', type: 'varchar', length: '64' },
          { name: 'state', type: 'varchar', length: '16' },
          { name: 'settings', type: 'text' },
          { name: 'created_at', type: 'varchar', length: '32' },
          { name: 'updated_at', type: 'varchar', length: '32' },
        ],
        indices: [new TableIndex({ name: 'uq_experiments_name', columnNames: ['name'], isUnique: true })],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('experiments');
    await queryRunner.dropColumn('sites', 'revoked_at');
    await queryRunner.dropColumn('sites', 'added_at');
  }
}
