import type { TypeOrmModuleOptions } from '@nestjs/typeorm';
import type { DatabaseConfig } from '../config/config';
import { ENTITIES } from './entities';
import { InitialSchema1733300000000 } from './migrations/1733300000000-initial-schema';
import { SiteRevocationAndExperiments1733400000000 } from './migrations/1733400000000-site-revocation-and-experiments';
import { SiteGpu1733500000000 } from './migrations/1733500000000-site-gpu';
import { StoredUpdates1733610000000 } from './migrations/1733610000000-stored-updates';
import { OptimizerState1733700000000 } from './migrations/1733700000000-optimizer-state';

export const MIGRATIONS = [
  InitialSchema1733300000000,
  SiteRevocationAndExperiments1733400000000,
  SiteGpu1733500000000,
  StoredUpdates1733610000000,
  OptimizerState1733700000000,
];

/**
 * TypeORM options for the configured database. The schema comes from the
 * migrations, which run at start; `synchronize` stays off so that a changed
 * entity never alters a production table silently.
 */
export function typeOrmOptions(database: DatabaseConfig): TypeOrmModuleOptions {
  const common = {
    entities: ENTITIES,
    migrations: MIGRATIONS,
    migrationsRun: true,
    synchronize: false,
    logging: false,
    // One attempt: a wrong DATABASE_URL should fail the start at once, not after nine retries.
    retryAttempts: 0,
  } as const;
  switch (database.type) {
    case 'sqlite':
      // WAL lets the REST API read while a round writes.
      return { ...common, type: 'better-sqlite3', database: database.path, enableWAL: true };
    case 'postgres':
      return { ...common, type: 'postgres', url: database.url };
  }
}
