import 'reflect-metadata';
import { ConfigError, loadConfig } from './config/config';
import { createRootLogger } from './logging/logger';
import { startCoordinator } from './coordinator';
import { sitesCommand } from './cli/sites-command';
import { pkiCommand } from './cli/pki-command';

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'pki') {
    return pkiCommand(argv.slice(1), {
      stdout: (text) => process.stdout.write(text),
      stderr: (text) => process.stderr.write(text),
    });
  }
  if (argv[0] === 'sites') {
    return sitesCommand(argv.slice(1), process.env, {
      stdout: (text) => process.stdout.write(text),
      stderr: (text) => process.stderr.write(text),
    });
  }
  let config;
  try {
    config = loadConfig(argv, process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`coordinator: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const logger = createRootLogger(config.logLevel);
  let coordinator;
  try {
    coordinator = await startCoordinator(config, logger);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`coordinator: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  // Scripts wait for exactly this line on stdout; logs go to stderr.
  process.stdout.write(`coordinator listening on ${coordinator.scheme}://${config.host}:${coordinator.port}\n`);

  let shuttingDown = false;
  const shutdown = (signal: string) => {
    shuttingDown = true;
    logger.info({ signal }, `received ${signal}, shutting down`);
    coordinator.close().then(
      () => process.exit(0),
      (error: Error) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));

  try {
    const summaries = await coordinator.summaries;
    const summary = { experiments: summaries };
    if (config.exitWhenDone) {
      // Closing at once would cut off federation:done on its way, and an agent
      // that is reconnecting would never learn that the federation is over.
      logger.info({ timeoutS: config.doneTimeoutS }, `waiting up to ${config.doneTimeoutS} s for the sites to acknowledge federation:done`);
      const delivery = await coordinator.doneDelivered(config.doneTimeoutS * 1000);
      if (delivery.missing.length > 0) {
        logger.warn(delivery, `${delivery.missing.length} sites did not acknowledge federation:done within ${config.doneTimeoutS} s: ${delivery.missing.join(', ')}`);
      } else {
        logger.info(delivery, 'every site acknowledged federation:done');
      }
      logger.info(summary, 'exiting: --exit-when-done');
      await coordinator.close();
      return 0;
    }
    logger.info(summary, 'all rounds done; the REST API keeps serving');
    return await new Promise<number>(() => {});
  } catch {
    // startCoordinator has logged why the round loop ended; a signal ends it on purpose.
    await coordinator.close();
    return shuttingDown ? 0 : 1;
  }
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`coordinator failed to start: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
