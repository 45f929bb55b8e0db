import { createHash, timingSafeEqual } from 'node:crypto';
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import type { Logger } from 'pino';
import type { SiteHello } from '@covnet/protocol';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/config';
import { ROOT_LOGGER } from '../logging/logger';
import { SiteEntity } from '../persistence/entities';
import { CoordinatorEvents } from '../events/coordinator-events';
import { Clock } from '../clock';
import { readSitesFile } from './sites-file';
import { addSite, revokeSite } from './site-tokens';

/**
 * Interval at which the sites table is read again. `sites revoke` run from
 * another process then closes the site's connection within a second: this
 * interval plus one read of the table, with room for a busy event loop.
 */
export const SITES_REFRESH_MS = 500;

/** Result of authenticating a handshake token. */
export type TokenCheck = { site: string; revoked: false } | { site: string; revoked: true } | null;

/** Sites allowed to join, their token hashes and what they last reported; backed by the `sites` table. */
@Injectable()
export class SiteRegistry implements OnApplicationShutdown {
  private credentials: { name: string; hash: Buffer; revoked: boolean }[] = [];
  private cancelRefresh: () => void = () => {};
  private stopped = false;
  private readonly log: Logger;

  constructor(
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    @Inject(ROOT_LOGGER) rootLogger: Logger,
    @InjectRepository(SiteEntity) private readonly sites: Repository<SiteEntity>,
    @Inject(Clock) private readonly clock: Clock,
    @Inject(CoordinatorEvents) private readonly events: CoordinatorEvents,
  ) {
    this.log = rootLogger.child({ context: 'sites' });
  }

  /**
   * Upserts the sites of the --sites file, if one is given, and loads every
   * site's token hash. A site revoked with `sites revoke` stays revoked even
   * when the file still lists it.
   */
  async loadSitesFile(): Promise<void> {
    if (this.config.sitesFile !== null) {
      const listed = await readSitesFile(this.config.sitesFile);
      for (const site of listed) {
        const existing = await this.sites.findOne({ where: { name: site.name } });
        if (existing) {
          if (existing.revokedAt !== null) {
            this.log.warn({ site: site.name }, `site ${site.name} is listed in ${this.config.sitesFile} but was revoked at ${existing.revokedAt}: it stays revoked`);
            continue;
          }
          existing.tokenSha256 = site.tokenSha256;
          await this.sites.save(existing);
        } else {
          await this.sites.insert({
            name: site.name,
            tokenSha256: site.tokenSha256,
            lastSeenAt: null,
            backend: null,
            gpu: null,
            agentVersion: null,
            trainExams: null,
            valExams: null,
            addedAt: this.clock.nowIso(),
            revokedAt: null,
          });
        }
      }
      this.log.info({ sites: listed.map((s) => s.name) }, `loaded ${listed.length} sites from ${this.config.sitesFile}`);
    }
    await this.refresh();
    const active = this.credentials.filter((c) => !c.revoked).length;
    if (active === 0) this.log.warn('no active site: add one with `sites add NAME` or --sites FILE');
    this.scheduleRefresh();
  }

  /**
   * Returns the site whose token hash matches `token` and whether it is
   * revoked, or null. Every stored hash is compared in constant time, so the
   * time taken does not reveal which site, if any, came close.
   */
  authenticate(token: string): TokenCheck {
    const digest = createHash('sha256').update(token, 'utf8').digest();
    let match: TokenCheck = null;
    for (const credential of this.credentials) {
      if (timingSafeEqual(digest, credential.hash) && match === null) match = { site: credential.name, revoked: credential.revoked };
    }
    return match;
  }

  /**
   * Like `authenticate`, but reads the sites table again before returning
   * null, so a site added by `sites add` in another process can connect at once.
   */
  async authenticateFresh(token: string): Promise<TokenCheck> {
    const check = this.authenticate(token);
    if (check !== null) return check;
    // NOTE: every unknown token costs one read of the sites table; the table is small.
    await this.refresh();
    return this.authenticate(token);
  }

  /** Adds a site and returns its new token, which is shown only this once. */
  async add(name: string): Promise<{ site: SiteEntity; token: string }> {
    const added = await addSite(this.sites, name, this.clock.nowIso());
    this.log.info({ site: name }, `site ${name} added`);
    await this.refresh();
    return added;
  }

  /** Revokes a site's token; its connection is closed before this returns. */
  async revoke(name: string): Promise<SiteEntity> {
    const site = await revokeSite(this.sites, name, this.clock.nowIso());
    this.log.warn({ site: name }, `site ${name} revoked`);
    await this.refresh();
    return site;
  }

  async recordSeen(site: string): Promise<void> {
    await this.sites.update({ name: site }, { lastSeenAt: this.clock.nowIso() });
    this.events.changed('sites');
  }

  async recordHello(site: string, hello: SiteHello): Promise<void> {
    await this.sites.update(
      { name: site },
      {
        lastSeenAt: this.clock.nowIso(),
        backend: hello.backend,
        gpu: hello.gpu ?? null,
        agentVersion: hello.agentVersion,
        trainExams: hello.trainExams,
        valExams: hello.valExams,
      },
    );
    this.events.changed('sites');
  }

  async list(): Promise<SiteEntity[]> {
    return this.sites.find({ order: { name: 'ASC' } });
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    this.cancelRefresh();
  }

  /**
   * Reloads the token hashes from the database and announces every site that
   * was revoked since the last load, so its connection can be closed.
   */
  private async refresh(): Promise<void> {
    const rows = await this.sites.find({ order: { name: 'ASC' } });
    const wasActive = new Set(this.credentials.filter((c) => !c.revoked).map((c) => c.name));
    const before = this.credentials.map((c) => `${c.name}:${c.revoked}`).join(',');
    this.credentials = rows.map((row) => ({ name: row.name, hash: Buffer.from(row.tokenSha256, 'hex'), revoked: row.revokedAt !== null }));
    for (const credential of this.credentials) {
      if (credential.revoked && wasActive.has(credential.name)) this.events.emit('siteRevoked', credential.name);
    }
    if (this.credentials.map((c) => `${c.name}:${c.revoked}`).join(',') !== before) this.events.changed('sites');
  }

  private scheduleRefresh(): void {
    if (this.stopped) return;
    this.cancelRefresh = this.clock.setTimer(SITES_REFRESH_MS, () => {
      this.refresh()
        .catch((error: Error) => {
          if (!this.stopped) this.log.error({ err: error }, 'reading the sites table failed; retrying in a second');
        })
        .finally(() => this.scheduleRefresh());
    });
  }
}
