import { TableColumn, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * Adds the server optimizer's state file to each model version, recorded in
 * the same row as the checkpoint, so that a restarted FedAdam experiment
 * continues with the moments it had.
 */
export class OptimizerState1733700000000 implements MigrationInterface {
  name = 'OptimizerState1733700000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('model_versions', new TableColumn({ name: 'optimizer_state_path', type: 'text', isNullable: true }));
    await queryRunner.addColumn('model_versions', new TableColumn({ name: 'optimizer_state_sha256', type: 'varchar', length: '64', isNullable: true }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('model_versions', 'optimizer_state_sha256');
    await queryRunner.dropColumn('model_versions', 'optimizer_state_path');
  }
}
