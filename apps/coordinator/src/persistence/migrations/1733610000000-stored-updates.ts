import { TableColumn, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * Adds the file of each accepted update, kept until its round's checkpoint is
 * recorded, so that a restarted coordinator can rebuild the round's FedAvg sum.
 */
export class StoredUpdates1733610000000 implements MigrationInterface {
  name = 'StoredUpdates1733610000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('updates', new TableColumn({ name: 'payload_path', type: 'text', isNullable: true }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('updates', 'payload_path');
  }
}
