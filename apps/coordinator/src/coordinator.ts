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
import { ModelStore } from './models/model-store.service';
import { RoundScheduler, type FederationSummary } from './rounds/round-scheduler.service';
import { AdminToken } from './auth/admin-token.service';
import { ExperimentService } from './experiments/experiment.service';
import { serveDashboard } from './dashboard/serve-dashboard';
import { serveApiDocs } from './api/api-docs';
import { applyConsortiumFile } from './experiments/consortium-config';

export interface RunningCoordinator {
  /** The TCP port actually bound; differs from the config when it asked for 0. */
  port: number;
  /** Stops the scheduler, closes sockets, the HTTP server and the database. */
  close(): Promise<void>;
  /**
   * Resolves when the last round is done. Rejects if the round loop fails or
   * the coordinator is closed first; the rejection is already logged.
   */
  done: Promise<FederationSummary>;
}

/**
 * Starts the coordinator: applies the consortium file, if any, runs migrations, upserts the sites, loads the
 * global model, listens on the configured host and port, and starts the rounds.
 * @param logger defaults to pino JSON on stderr at `config.logLevel`.
 * @throws ConfigError for an invalid consortium file.
 * @throws Error when the database, the sites file or the initial model cannot be used.
 */
export async function startCoordinator(flags: CoordinatorConfig, logger: Logger = createRootLogger(flags.logLevel)): Promise<RunningCoordinator> {
  const config = await applyConsortiumFile(flags);
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
    // The experiment first: a stored experiment's settings decide what the model store checks.
    await app.get(ExperimentService).init();
    await app.get(ModelStore).init();
    serveApiDocs(app);
    serveDashboard(app);
    await app.listen(config.port, config.host);
  } catch (error) {
    await app.close();
    throw error;
  }

  const port = (app.getHttpServer().address() as AddressInfo).port;
  logger.info({ host: config.host, port, experiment: config.experiment }, 'coordinator listening');

  const done = app.get(RoundScheduler).run();
  done.catch((error: Error) => {
    if (error.name === 'SchedulerStopped') logger.info('round loop stopped before the federation finished');
    else logger.error({ err: error }, 'round loop failed');
  });

  let closing: Promise<void> | null = null;
  return {
    port,
    done,
    close: () => {
      closing ??= app.close();
      return closing;
    },
  };
}
