import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Daemons under test log warnings and errors only, so failures stand out.
    env: { COVNET_LOG_LEVEL: 'warn', LOG_LEVEL: 'warn' },
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: { name: 'default', include: ['libs/*/test/**/*.test.ts', 'apps/*/test/**/*.test.ts', 'test/**/*.test.ts'] },
      },
      {
        // The whole coordinator suite once more, on PostgreSQL instead of SQLite.
        extends: true,
        test: {
          name: 'coordinator-postgres',
          include: ['apps/coordinator/test/**/*.test.ts'],
          env: { COORDINATOR_TEST_DATABASE: 'postgres' },
          setupFiles: ['apps/coordinator/test/support/postgres-setup.ts'],
        },
      },
    ],
  },
});
