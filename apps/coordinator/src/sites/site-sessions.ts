import { EventEmitter } from 'node:events';
import { Injectable } from '@nestjs/common';
import type { Socket } from 'socket.io';
import type { AgentToCoordinatorEvents, CoordinatorToAgentEvents, SiteHello } from '@covnet/protocol';

export type AgentSocket = Socket<AgentToCoordinatorEvents, CoordinatorToAgentEvents>;

interface Session {
  socket: AgentSocket;
  hello: SiteHello | null;
}

/**
 * Connected sites, at most one socket each, and the `site:hello` each sent on
 * that socket. Emits 'ready' when a site has sent hello and 'gone' when its
 * socket closes.
 */
@Injectable()
export class SiteSessions extends EventEmitter {
  private readonly sessions = new Map<string, Session>();

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
