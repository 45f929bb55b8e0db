import { readFileSync } from 'node:fs';
import { ConfigError, loadConfig } from './config/config';
import { checkHealth, coordinatorArgsOf } from './cli/health-check';

/**
 * Checks the coordinator's health for the container image: `health-check.ts [coordinator flags...]`.
 * Without flags it reads those of the coordinator from `/proc/1/cmdline`,
 * because in the image the coordinator is process 1. The probe thus follows
 * the same flags and COVNET_TLS_* variables. Exits 0 when healthy, 1 otherwise.
 */
async function main(): Promise<number> {
  let args = process.argv.slice(2);
  if (args.length === 0) {
    let cmdline: Buffer;
    try {
      cmdline = readFileSync('/proc/1/cmdline');
    } catch (error) {
      process.stderr.write(`health check: /proc/1/cmdline cannot be read (${(error as Error).message}); pass the coordinator's flags\n`);
      return 1;
    }
    const found = coordinatorArgsOf(cmdline);
    if (found === null) {
      process.stderr.write('health check: process 1 is not the coordinator (no apps/coordinator/src/main.ts in /proc/1/cmdline); pass the coordinator\'s flags\n');
      return 1;
    }
    args = found;
  }
  let config;
  try {
    config = loadConfig(args, process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`health check: ${error.message}\n`);
    return 1;
  }
  const result = await checkHealth(config, process.env);
  (result.healthy ? process.stdout : process.stderr).write(`health check: ${result.message}\n`);
  return result.healthy ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`health check failed: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
