import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['libs/*/test/**/*.test.ts', 'apps/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Daemons under test log warnings and errors only, so failures stand out.
    env: { COVNET_LOG_LEVEL: 'warn', LOG_LEVEL: 'warn' },
    reporters: ['default'],
  },
});
