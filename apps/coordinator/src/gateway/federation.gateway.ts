import { Inject } from '@nestjs/common';
import {
  ConnectedSocket,
  MessageBody,
  SubscribeMessage,
  WebSocketGateway,
  type OnGatewayConnection,
  type OnGatewayDisconnect,
  type OnGatewayInit,
} from '@nestjs/websockets';
import type { Server } from 'socket.io';
import type { Logger } from 'pino';
import {
  AGENT_EVENTS,
  PROTOCOL_VERSION,
  ProtocolError,
  failure,
  parseEvent,
  type Ack,
  type Welcome,
} from '@covnet/protocol';
import { ROOT_LOGGER } from '../logging/logger';
import { SiteRegistry } from '../sites/site-registry.service';
import { SiteSessions, type AgentSocket } from '../sites/site-sessions';
import { ExperimentRuntimes } from '../experiments/experiment-runtimes';
import { CoordinatorEvents } from '../events/coordinator-events';
import { FailedAuthLimiter, type AuthClient } from '../auth/failed-auth-limiter';
import { HandshakeError, authenticateHandshake, claimedSite } from './handshake';
import { clientCertificateOf } from './client-certificate';

interface SocketData {
  site: string;
}

/**
 * The socket.io endpoint for site agents. Sockets are authenticated in a
 * middleware before they connect. Every event is validated with the
 * protocol's schema, and its result is returned through the acknowledgement.
 */
@WebSocketGateway()
export class FederationGateway implements OnGatewayInit, OnGatewayConnection, OnGatewayDisconnect {
  private readonly log: Logger;

  constructor(
    @Inject(ROOT_LOGGER) rootLogger: Logger,
    @Inject(SiteRegistry) private readonly registry: SiteRegistry,
    @Inject(SiteSessions) private readonly sessions: SiteSessions,
    @Inject(ExperimentRuntimes) private readonly runtimes: ExperimentRuntimes,
    @Inject(CoordinatorEvents) private readonly events: CoordinatorEvents,
    @Inject(FailedAuthLimiter) private readonly limiter: FailedAuthLimiter,
  ) {
    this.log = rootLogger.child({ context: 'gateway' });
    events.on('siteRevoked', (site) => {
      if (this.sessions.disconnect(site)) this.log.warn({ site }, `site ${site} was revoked: its connection is closed`);
    });
  }

  afterInit(server: Server): void {
    server.use(async (socket, next) => {
      const certificate = clientCertificateOf(socket.request);
      const client: AuthClient = { address: socket.handshake.address, claim: `site:${claimedSite(socket.handshake.auth, certificate)}` };
      const retryAfterS = this.limiter.retryAfterS(client);
      if (retryAfterS > 0) {
        this.log.debug({ address: client.address, claim: client.claim, retryAfterS }, 'socket connection rejected: too many failed authentications');
        next(new HandshakeError('rate_limited', `too many failed authentications from this address: retry in ${retryAfterS} s`, retryAfterS));
        return;
      }
      try {
        const authenticate = (token: string) => this.registry.authenticateFresh(token);
        (socket.data as SocketData).site = await authenticateHandshake(socket.handshake.auth, authenticate, certificate);
        next();
      } catch (error) {
        if (!(error instanceof HandshakeError)) {
          this.log.error({ err: error }, 'socket authentication failed unexpectedly');
          next(new HandshakeError('internal_error', 'authentication failed: internal error'));
          return;
        }
        if (error.isFailedAuthentication) {
          this.limiter.recordFailure(client, String((socket.handshake.auth as { token?: unknown } | undefined)?.token));
        }
        // The message names no token, so it is safe to log.
        this.log.warn({ code: error.data.code, address: client.address, claim: client.claim }, error.message);
        next(error);
      }
    });
  }

  handleConnection(socket: AgentSocket): void {
    const site = this.siteOf(socket);
    socket.on('error', (error) => this.log.error({ site, err: error }, `socket of site ${site} failed`));
    const previous = this.sessions.attach(site, socket);
    if (previous) {
      this.log.warn({ site }, `site ${site} connected again: its earlier connection is closed`);
      previous.disconnect(true);
    }
    this.log.info({ site, address: socket.handshake.address }, `site ${site} connected`);
    this.registry.recordSeen(site).catch((error: Error) => this.log.error({ site, err: error }, `storing last-seen time of site ${site} failed`));
  }

  handleDisconnect(socket: AgentSocket): void {
    const site = (socket.data as Partial<SocketData>).site;
    if (site === undefined) return;
    if (this.sessions.detach(site, socket)) {
      this.log.info({ site }, `site ${site} disconnected`);
      this.events.changed('sites');
    }
  }

  @SubscribeMessage(AGENT_EVENTS.hello)
  hello(@ConnectedSocket() socket: AgentSocket, @MessageBody() body: unknown): Promise<Ack<Welcome>> {
    return this.respond(socket, AGENT_EVENTS.hello, body, async (site) => {
      const hello = parseEvent(AGENT_EVENTS.hello, body);
      await this.registry.recordHello(site, hello);
      this.log.info(
        { site, backend: hello.backend, gpu: hello.gpu, agentVersion: hello.agentVersion, trainExams: hello.trainExams, valExams: hello.valExams },
        `site ${site} is ready`,
      );
      // The site is marked ready after the acknowledgement is sent, so that the
      // agent receives its welcome before a round task that the hello may trigger.
      setImmediate(() => this.sessions.recordHello(site, socket, hello));
      // An agent that handles one experiment takes the first; tasks name their own experiment.
      return { site, experiment: this.runtimes.get().name, protocolVersion: PROTOCOL_VERSION };
    });
  }

  @SubscribeMessage(AGENT_EVENTS.modelChunk)
  modelChunk(@ConnectedSocket() socket: AgentSocket, @MessageBody() body: unknown): Promise<Ack<{ data: Uint8Array }>> {
    return this.respond(socket, AGENT_EVENTS.modelChunk, body, async (site) => {
      const request = parseEvent(AGENT_EVENTS.modelChunk, body);
      return { data: await this.runtimes.forMessage(site, request.experiment).models.chunk(request.version, request.index) };
    });
  }

  @SubscribeMessage(AGENT_EVENTS.updateBegin)
  updateBegin(@ConnectedSocket() socket: AgentSocket, @MessageBody() body: unknown): Promise<Ack<{ uploadId: string; nextIndex: number }>> {
    return this.respond(socket, AGENT_EVENTS.updateBegin, body, async (site) => {
      const begin = parseEvent(AGENT_EVENTS.updateBegin, body);
      return this.runtimes.forMessage(site, begin.experiment).scheduler.beginUpdate(site, begin);
    });
  }

  @SubscribeMessage(AGENT_EVENTS.updateChunk)
  updateChunk(@ConnectedSocket() socket: AgentSocket, @MessageBody() body: unknown): Promise<Ack<{ nextIndex: number }>> {
    return this.respond(socket, AGENT_EVENTS.updateChunk, body, async (site) => {
      const chunk = parseEvent(AGENT_EVENTS.updateChunk, body);
      return this.runtimes.forUpload(site, chunk.uploadId).scheduler.addUpdateChunk(site, chunk);
    });
  }

  @SubscribeMessage(AGENT_EVENTS.updateCommit)
  updateCommit(@ConnectedSocket() socket: AgentSocket, @MessageBody() body: unknown): Promise<Ack<{ accepted: true }>> {
    return this.respond(socket, AGENT_EVENTS.updateCommit, body, async (site) => {
      const commit = parseEvent(AGENT_EVENTS.updateCommit, body);
      return this.runtimes.forUpload(site, commit.uploadId).scheduler.commitUpdate(site, commit);
    });
  }

  @SubscribeMessage(AGENT_EVENTS.metricsReport)
  metricsReport(@ConnectedSocket() socket: AgentSocket, @MessageBody() body: unknown): Promise<Ack> {
    return this.respond(socket, AGENT_EVENTS.metricsReport, body, async (site) => {
      const report = parseEvent(AGENT_EVENTS.metricsReport, body);
      await this.runtimes.forMessage(site, report.experiment).scheduler.reportMetrics(site, report);
      return {};
    });
  }

  /**
   * Runs a handler and turns its outcome into an acknowledgement. A
   * ProtocolError goes to the peer as it is. Any other error is logged with
   * its stack, and the peer gets only `internal_error`.
   */
  private async respond<T extends object>(
    socket: AgentSocket,
    event: string,
    body: unknown,
    handler: (site: string) => Promise<T>,
  ): Promise<Ack<T>> {
    const site = this.siteOf(socket);
    try {
      const result = await handler(site);
      return { ok: true, ...result };
    } catch (error) {
      if (error instanceof ProtocolError) {
        const round = roundOf(body, this.openRoundOf(body));
        this.log.warn({ site, experiment: experimentOf(body), round, event, code: error.code }, `${event} from site ${site} rejected: ${error.message}`);
        return failure(error.toBody());
      }
      this.log.error({ site, experiment: experimentOf(body), round: roundOf(body, this.openRoundOf(body)), event, err: error }, `${event} from site ${site} failed unexpectedly`);
      return failure({ code: 'internal_error', message: `${event} failed on the coordinator; retry later` });
    }
  }

  /** Returns the open round of the experiment a message names, else of the first experiment, for log lines. */
  private openRoundOf(body: unknown): number | null {
    const named = experimentOf(body);
    return (this.runtimes.names().includes(named ?? '') ? this.runtimes.get(named) : this.runtimes.get()).scheduler.openRound;
  }

  private siteOf(socket: AgentSocket): string {
    return (socket.data as SocketData).site;
  }
}

/** Returns the round a message names, else the open round, for the round id of log lines. */
function roundOf(body: unknown, openRound: number | null): number | undefined {
  const named = (body as { round?: unknown } | null | undefined)?.round;
  if (typeof named === 'number') return named;
  return openRound ?? undefined;
}

/** Returns the experiment a message names, if any, for log lines. */
function experimentOf(body: unknown): string | undefined {
  const named = (body as { experiment?: unknown } | null | undefined)?.experiment;
  return typeof named === 'string' ? named : undefined;
}
