import { Inject } from '@nestjs/common';
import { WebSocketGateway, type OnGatewayInit } from '@nestjs/websockets';
import type { Namespace } from 'socket.io';
import type { Logger } from 'pino';
import { ROOT_LOGGER } from '../logging/logger';
import { AdminToken } from '../auth/admin-token.service';
import { FailedAuthLimiter, type AuthClient } from '../auth/failed-auth-limiter';
import { CoordinatorEvents, type DashboardTopic } from '../events/coordinator-events';

/** Event the dashboard namespace emits when a topic's data changed; the page then fetches it again. */
export const DASHBOARD_CHANGED_EVENT = 'dashboard:changed';

/**
 * The `/dashboard` namespace of the coordinator's socket.io server. Browsers
 * authenticate with the admin token in the handshake `auth` and receive
 * the names of the changed topics. The data itself comes from the REST API.
 */
@WebSocketGateway({ namespace: '/dashboard' })
export class DashboardGateway implements OnGatewayInit {
  private readonly log: Logger;
  private namespace: Namespace | null = null;
  // Several changes within one tick (e.g. a round's state and its metrics) are sent once.
  private pending = new Set<DashboardTopic>();

  constructor(
    @Inject(ROOT_LOGGER) rootLogger: Logger,
    @Inject(AdminToken) private readonly token: AdminToken,
    @Inject(CoordinatorEvents) events: CoordinatorEvents,
    @Inject(FailedAuthLimiter) private readonly limiter: FailedAuthLimiter,
  ) {
    this.log = rootLogger.child({ context: 'dashboard' });
    events.on('changed', (topic) => this.schedule(topic));
  }

  afterInit(namespace: Namespace): void {
    this.namespace = namespace;
    namespace.use((socket, next) => {
      const client: AuthClient = { address: socket.handshake.address, claim: 'admin' };
      const retryAfterS = this.limiter.retryAfterS(client);
      if (retryAfterS > 0) {
        next(new Error(`too many failed authentications from this address: retry in ${retryAfterS} s`));
        return;
      }
      const token = (socket.handshake.auth as { token?: unknown } | undefined)?.token;
      if (typeof token === 'string' && this.token.matches(token)) {
        socket.on('error', (error) => this.log.error({ err: error }, 'dashboard socket failed'));
        next();
        return;
      }
      if (token !== undefined) this.limiter.recordFailure(client, String(token));
      this.log.warn({ address: socket.handshake.address }, 'dashboard connection rejected: missing or invalid admin token');
      next(new Error('missing or invalid admin token'));
    });
  }

  private schedule(topic: DashboardTopic): void {
    const first = this.pending.size === 0;
    this.pending.add(topic);
    if (!first) return;
    setImmediate(() => {
      const topics = [...this.pending];
      this.pending = new Set();
      this.namespace?.emit(DASHBOARD_CHANGED_EVENT, { topics });
    });
  }
}
