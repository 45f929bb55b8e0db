import 'reflect-metadata';
import { mkdir } from 'node:fs/promises';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { NestFactory } from '@nestjs/core';
import type { NestApplicationOptions } from '@nestjs/common';
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
import { httpsOptionsOf, isLoopbackHost } from './config/tls';
import { LimitedIoAdapter } from './gateway/socket-io-adapter';
import { SiteSessions, type DoneDelivery } from './sites/site-sessions';
import { logTlsClientErrors } from './auth/tls-client-errors';
import { describeFoldKernel, loadNativeFold } from './aggregation/native-fold';

/** Largest JSON request body of the REST API; the largest legitimate one, an experiment's settings, is under 2 KiB. */
export const MAX_JSON_BODY_BYTES = 64 * 1024;

export interface RunningCoordinator {
  /** The TCP port actually bound; differs from the config when it asked for 0. */
  port: number;
  /** `https` when the config names a TLS certificate, else `http`; socket.io runs over the same server. */
  scheme: 'http' | 'https';
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
  /**
   * Waits until every site owed `federation:done` has acknowledged it, or
   * `timeoutMs` has passed. Owed are the sites that took part in a round and
   * the sites connected now, except revoked ones. A site that connects while
   * this waits receives the message after its `site:hello`.
   */
  doneDelivered(timeoutMs: number): Promise<DoneDelivery>;
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
  const httpsOptions = await httpsOptionsOf(config);
  const app = await NestFactory.create<NestExpressApplication>(CoordinatorModule.forRoot(config, logger), {
    logger: new NestPinoLogger(logger),
    abortOnError: false,
    bodyParser: false,
    // Nest hands these to https.createServer unchanged; its own type omits a few of Node's option types.
    ...(httpsOptions === null ? {} : { httpsOptions: httpsOptions as NestApplicationOptions['httpsOptions'] }),
  });
  try {
    app.setGlobalPrefix('api');
    // A larger body gets 413 before it is parsed.
    app.useBodyParser('json', { limit: MAX_JSON_BODY_BYTES });
    app.useWebSocketAdapter(new LimitedIoAdapter(app));
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
  const scheme = httpsOptions === null ? 'http' : 'https';
  if (httpsOptions !== null) logTlsClientErrors(app.getHttpServer() as HttpsServer, logger);
  logger.info({ host: config.host, port, scheme, experiments: runtimes.names() }, 'coordinator listening');
  // Experiments started later over the REST API may use FedAvg too, so this is logged whatever the configured rules.
  logger.info({ fedavgKernel: loadNativeFold().fold === null ? 'wasm' : 'native' }, describeFoldKernel());
  if (scheme === 'http' && !isLoopbackHost(config.host)) {
    logger.warn(
      { host: config.host, port },
      `listening on ${config.host} without TLS: site tokens, the admin token and model weights cross the network in clear text; set --tls-cert and --tls-key`,
    );
  }

  // Each round loop logs its own failure.
  const summaries = Promise.all(runtimes.runAll());
  summaries.catch(() => {});
  const done = summaries.then((all) => all[0]);
  done.catch(() => {});

  let closing: Promise<void> | null = null;
  const sessions = app.get(SiteSessions);
  const registry = app.get(SiteRegistry);
  return {
    port,
    scheme,
    done,
    summaries,
    doneDelivered: async (timeoutMs) => {
      const revoked = new Set((await registry.list()).filter((site) => site.revokedAt !== null).map((site) => site.name));
      const owed = [...new Set([...(await runtimes.participants()), ...sessions.readySites()])].filter((site) => !revoked.has(site)).sort();
      return sessions.waitForDoneAcknowledged(owed, timeoutMs);
    },
    close: () => {
      closing ??= app.close();
      return closing;
    },
  };
}
