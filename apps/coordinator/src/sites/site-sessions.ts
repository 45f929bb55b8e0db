import { EventEmitter } from 'node:events';
import { Injectable } from '@nestjs/common';
import type { Socket } from 'socket.io';
import { COORDINATOR_EVENTS, type AgentToCoordinatorEvents, type CoordinatorToAgentEvents, type FederationDone, type SiteHello } from '@covnet/protocol';

export type AgentSocket = Socket<AgentToCoordinatorEvents, CoordinatorToAgentEvents>;

interface Session {
  socket: AgentSocket;
  hello: SiteHello | null;
}

/** Sites that acknowledged `federation:done` and sites still owed it. */
export interface DoneDelivery {
  acknowledged: string[];
  missing: string[];
}

/**
 * Connected sites, at most one socket each, and the `site:hello` each sent on
 * that socket. Emits 'ready' when a site has sent hello, 'gone' when its
 * socket closes and 'doneAcknowledged' when it acknowledged `federation:done`.
 */
@Injectable()
export class SiteSessions extends EventEmitter {
  private readonly sessions = new Map<string, Session>();
  private readonly doneAcknowledged = new Set<string>();

  /** Registers a socket for `site`; returns the socket it replaces, which the caller disconnects. */
  attach(site: string, socket: AgentSocket): AgentSocket | null {
    const previous = this.sessions.get(site)?.socket ?? null;
    this.sessions.set(site, { socket, hello: null });
    return previous;
  }

  /** Forgets `site` if `socket` is still its current one; returns whether it was. */
  detach(site: string, socket: AgentSocket): boolean {
    const session = this.sessions.get(site);
    if (!session || session.socket !== socket) return false;
    this.sessions.delete(site);
    this.emit('gone', site);
    return true;
  }

  recordHello(site: string, socket: AgentSocket, hello: SiteHello): void {
    const session = this.sessions.get(site);
    if (!session || session.socket !== socket) return;
    session.hello = hello;
    this.emit('ready', site);
  }

  /** Closes the connection of `site`, if any; the socket's disconnect handler then detaches it. */
  disconnect(site: string): boolean {
    const session = this.sessions.get(site);
    if (!session) return false;
    session.socket.disconnect(true);
    return true;
  }

  /** Returns the `site:hello` of the site's current connection, or null before it arrives. */
  helloOf(site: string): SiteHello | null {
    return this.sessions.get(site)?.hello ?? null;
  }

  isOnline(site: string): boolean {
    return this.sessions.has(site);
  }

  /** Connected sites that have sent `site:hello`, in name order. */
  readySites(): string[] {
    return [...this.sessions.entries()]
      .filter(([, session]) => session.hello !== null)
      .map(([site]) => site)
      .sort();
  }

  /**
   * Sends `federation:done` to a connected site and records its
   * acknowledgement. Resolves with whether the site acknowledged within
   * `timeoutMs`; agents older than the acknowledgement never do.
   */
  async sendDone(site: string, done: FederationDone, timeoutMs: number): Promise<boolean> {
    const session = this.sessions.get(site);
    if (!session) return false;
    try {
      await session.socket.timeout(timeoutMs).emitWithAck(COORDINATOR_EVENTS.done, done);
    } catch {
      // The site disconnected or did not acknowledge in time; it gets the message again after its next hello.
      return false;
    }
    this.doneAcknowledged.add(site);
    this.emit('doneAcknowledged', site);
    return true;
  }

  /**
   * Waits until every site in `sites` has acknowledged `federation:done`, or
   * `timeoutMs` has passed, and returns which ones did.
   */
  async waitForDoneAcknowledged(sites: readonly string[], timeoutMs: number): Promise<DoneDelivery> {
    const pending = () => sites.filter((site) => !this.doneAcknowledged.has(site));
    if (pending().length > 0) {
      await new Promise<void>((resolve) => {
        const finish = () => {
          clearTimeout(timer);
          this.off('doneAcknowledged', check);
          resolve();
        };
        const check = () => {
          if (pending().length === 0) finish();
        };
        const timer = setTimeout(finish, timeoutMs);
        this.on('doneAcknowledged', check);
      });
    }
    const missing = pending();
    return { acknowledged: sites.filter((site) => !missing.includes(site)), missing };
  }

  /** Sends an event to a site if it is connected; returns whether it was. */
  send<E extends keyof CoordinatorToAgentEvents>(
    site: string,
    event: E,
    ...args: Parameters<CoordinatorToAgentEvents[E]>
  ): boolean {
    const session = this.sessions.get(site);
    if (!session) return false;
    session.socket.emit(event, ...args);
    return true;
  }
}
