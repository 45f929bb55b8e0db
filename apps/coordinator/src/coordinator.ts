import 'reflect-metadata';
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { NestFactory } from '@nestjs/core';
import { IoAdapter } from '@nestjs/platform-socket.io';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Logger } from 'pino';
import type { CoordinatorConfig } from './config/config';
import { NestPinoLogger, createRootLogger } from './logging/logger';
import { CoordinatorModule } from './coordinator.module';
import { SiteRegistry } from './sites/site-registry.service';
import type { FederationSummary } from './rounds/round-scheduler.service';
import { AdminToken } from './auth/admin-token.service';
import { ExperimentRuntimes } from './experiments/experiment-runtimes';
import { serveDashboard } from './dashboard/serve-dashboard';
import { serveApiDocs } from './api/api-docs';
import { experimentConfigs } from './experiments/consortium-config';

export interface RunningCoordinator {
  /** The TCP port actually bound; differs from the config when it asked for 0. */
  port: number;
  /** Stops the scheduler, closes sockets, the HTTP server and the database. */
  close(): Promise<void>;
  /**
   * Resolves with the first experiment's outcome when every experiment the
   * coordinator started with has done its last round. Rejects if a round loop
   * fails or the coordinator is closed first; the rejection is already logged.
   * NOTE: experiments started later over the REST API are not waited for.
   */
  done: Promise<FederationSummary>;
  /** Outcome of each experiment the coordinator started with, in order; settles like `done`. */
  summaries: Promise<FederationSummary[]>;
}

/**
 * Starts the coordinator: reads the consortium file, if any, runs migrations, upserts the sites, loads the
 * global model of each experiment, listens on the configured host and port, and starts the rounds of every experiment.
 * @param logger defaults to pino JSON on stderr at `config.logLevel`.
 * @throws ConfigError for an invalid consortium file.
 * @throws Error when the database, the sites file or the initial model cannot be used.
 */
export async function startCoordinator(flags: CoordinatorConfig, logger: Logger = createRootLogger(flags.logLevel)): Promise<RunningCoordinator> {
  const configs = await experimentConfigs(flags);
  const config = configs[0];
  await mkdir(config.dataDir, { recursive: true });
  const app = await NestFactory.create<NestExpressApplication>(CoordinatorModule.forRoot(config, logger), {
    logger: new NestPinoLogger(logger),
    abortOnError: false,
  });
  try {
    app.setGlobalPrefix('api');
    app.useWebSocketAdapter(new IoAdapter(app));
    await app.get(AdminToken).init();
    await app.get(SiteRegistry).loadSitesFile();
    await app.get(ExperimentRuntimes).init(configs);
    serveApiDocs(app);
    serveDashboard(app);
    await app.listen(config.port, config.host);
  } catch (error) {
    await app.close();
    throw error;
  }

  const port = (app.getHttpServer().address() as AddressInfo).port;
  const runtimes = app.get(ExperimentRuntimes);
  logger.info({ host: config.host, port, experiments: runtimes.names() }, 'coordinator listening');

  // Each round loop logs its own failure.
  const summaries = Promise.all(runtimes.runAll());
  summaries.catch(() => {});
  const done = summaries.then((all) => all[0]);
  done.catch(() => {});

  let closing: Promise<void> | null = null;
  return {
    port,
    done,
    summaries,
    close: () => {
      closing ??= app.close();
      return closing;
    },
  };
}
