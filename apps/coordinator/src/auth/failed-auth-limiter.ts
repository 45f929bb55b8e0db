import { createHmac, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { Inject, Injectable } from '@nestjs/common';
import type { Logger } from 'pino';
import { Clock } from '../clock';
import { ROOT_LOGGER } from '../logging/logger';

/**
 * Limits on failed authentications; a key over its limit is rejected until its oldest counted failure leaves the window.
 * A failure counts once per distinct wrong token, so a client that retries one mistyped token is not blocked by it.
 */
export const FAILED_AUTH_LIMITS = {
  /** Sliding window over which failures are counted. */
  windowMs: 60_000,
  /** Failures of one client, an address together with the identity it claims, before its attempts are rejected. */
  maxFailuresPerClient: 5,
  /** Failures from one address, whatever identities it claims, before all its attempts are rejected. */
  maxFailuresPerAddress: 20,
  /** Keys kept in memory; past it, keys without a failure in the window are dropped first, then the oldest. */
  maxKeys: 10_000,
};

/** Client of an authentication attempt: its remote address and the identity it claims. */
export interface AuthClient {
  /** Remote address of the TCP connection, never a proxy header. */
  address: string;
  /** Claimed identity, e.g. `site:hospital-a`, `site:` for an agent that names no site, or `admin`. */
  claim: string;
}

/**
 * Counts failed authentications, one per distinct wrong token, per client
 * and per address, and returns how long a client must wait. An attempt while blocked is rejected without checking
 * its token and is not counted, so a blocked client cannot extend its block.
 *
 * NOTE: the address is the TCP peer. Clients behind one NAT or proxy share an
 * address and its limit. On loopback every local client has the same address,
 * so only the claimed identity separates them there.
 */
@Injectable()
export class FailedAuthLimiter {
  /** Per key, the time of each counted failure and the fingerprint of its token. */
  private readonly failures = new Map<string, { time: number; fingerprint: string }[]>();
  /** Key of the token fingerprints, new in every process, so that a fingerprint cannot be tested against guesses elsewhere. */
  private readonly fingerprintKey = randomBytes(32);
  private readonly log: Logger;

  constructor(
    @Inject(Clock) private readonly clock: Clock,
    @Inject(ROOT_LOGGER) rootLogger: Logger,
  ) {
    this.log = rootLogger.child({ context: 'auth' });
  }

  /** Returns the whole seconds `client` must wait before its next attempt is checked, or 0 when it may try now. */
  retryAfterS(client: AuthClient): number {
    const now = this.clock.now().getTime();
    const waitMs = Math.max(
      this.waitMs(clientKey(client), FAILED_AUTH_LIMITS.maxFailuresPerClient, now),
      this.waitMs(addressKey(client), FAILED_AUTH_LIMITS.maxFailuresPerAddress, now),
    );
    return waitMs <= 0 ? 0 : Math.ceil(waitMs / 1000);
  }

  /**
   * Counts a failed authentication of `client` with the wrong token `token`, unless the same token
   * already failed within the window, and logs once when the count blocks the client or its address.
   */
  recordFailure(client: AuthClient, token: string): void {
    const now = this.clock.now().getTime();
    const fingerprint = createHmac('sha256', this.fingerprintKey).update(token, 'utf8').digest('base64url');
    const clientCount = this.add(clientKey(client), fingerprint, now);
    const addressCount = this.add(addressKey(client), fingerprint, now);
    const windowS = FAILED_AUTH_LIMITS.windowMs / 1000;
    if (clientCount === FAILED_AUTH_LIMITS.maxFailuresPerClient) {
      this.log.warn(
        { address: client.address, claim: client.claim, failures: clientCount },
        `${clientCount} wrong tokens from ${client.address} as "${client.claim}" within ${windowS} s: its attempts are rejected for up to ${windowS} s`,
      );
    }
    if (addressCount === FAILED_AUTH_LIMITS.maxFailuresPerAddress) {
      this.log.warn(
        { address: client.address, failures: addressCount },
        `${addressCount} wrong tokens from ${client.address} within ${windowS} s: every attempt from it is rejected for up to ${windowS} s`,
      );
    }
  }

  private waitMs(key: string, max: number, now: number): number {
    const entries = this.recent(key, now);
    if (entries.length < max) return 0;
    return entries[entries.length - max].time + FAILED_AUTH_LIMITS.windowMs - now;
  }

  /** Adds a failure at `now` unless its token already failed in the window; returns the failures of `key` in the window. */
  private add(key: string, fingerprint: string, now: number): number {
    const entries = this.recent(key, now);
    if (!entries.some((entry) => entry.fingerprint === fingerprint)) entries.push({ time: now, fingerprint });
    // Re-inserting moves the key to the end of the map's order, which `evict` treats as newest.
    this.failures.delete(key);
    this.failures.set(key, entries);
    if (this.failures.size > FAILED_AUTH_LIMITS.maxKeys) this.evict(now);
    return entries.length;
  }

  private recent(key: string, now: number): { time: number; fingerprint: string }[] {
    const entries = this.failures.get(key) ?? [];
    const start = entries.findIndex((entry) => entry.time > now - FAILED_AUTH_LIMITS.windowMs);
    return start < 0 ? [] : entries.slice(start);
  }

  private evict(now: number): void {
    for (const [key, entries] of this.failures) {
      if (entries[entries.length - 1].time <= now - FAILED_AUTH_LIMITS.windowMs) this.failures.delete(key);
    }
    // NOTE: a client with more addresses than maxKeys can push other keys out and reset their counts.
    for (const key of this.failures.keys()) {
      if (this.failures.size <= FAILED_AUTH_LIMITS.maxKeys) break;
      this.failures.delete(key);
    }
  }
}

function clientKey(client: AuthClient): string {
  return `${networkOf(client.address)} ${client.claim}`;
}

function addressKey(client: AuthClient): string {
  return networkOf(client.address);
}

/**
 * Returns the key of an address: an IPv4 address as it is, also when mapped
 * into IPv6, and the /64 prefix of an IPv6 address. One host usually has a
 * whole /64, so it could otherwise change its address at every attempt.
 */
export function networkOf(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (isIP(address) !== 6) return address;
  const [head, tail = ''] = address.toLowerCase().split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === '' ? [] : tail.split(':');
  const groups = [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  return `${groups.slice(0, 4).map((group) => group.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
