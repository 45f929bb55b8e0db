import { TableColumn, type MigrationInterface, type QueryRunner } from 'typeorm';

/** Adds the GPU each site last reported in `site:hello`. */
export class SiteGpu1733500000000 implements MigrationInterface {
  name = 'SiteGpu1733500000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('sites', new TableColumn({ name: 'gpu', type: 'varchar', length: '128', isNullable: true }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('sites', 'gpu');
  }
}
