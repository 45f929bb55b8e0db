import { createHash, timingSafeEqual } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import type { Logger } from 'pino';
import type { SiteHello } from '@covnet/protocol';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/config';
import { ROOT_LOGGER } from '../logging/logger';
import { SiteEntity } from '../persistence/entities';
import { Clock } from '../clock';
import { readSitesFile } from './sites-file';

/** Sites allowed to join, their token hashes and what they last reported; backed by the `sites` table. */
@Injectable()
export class SiteRegistry {
  private credentials: { name: string; hash: Buffer }[] = [];
  private readonly log: Logger;

  constructor(
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    @Inject(ROOT_LOGGER) rootLogger: Logger,
    @InjectRepository(SiteEntity) private readonly sites: Repository<SiteEntity>,
    @Inject(Clock) private readonly clock: Clock,
  ) {
    this.log = rootLogger.child({ context: 'sites' });
  }

  /**
   * Upserts the sites of the --sites file. Only those sites can authenticate,
   * so removing a site from the file revokes it at the next start.
   */
  async loadSitesFile(): Promise<void> {
    const listed = await readSitesFile(this.config.sitesFile);
    for (const site of listed) {
      const existing = await this.sites.findOne({ where: { name: site.name } });
      if (existing) {
        existing.tokenSha256 = site.tokenSha256;
        await this.sites.save(existing);
      } else {
        await this.sites.insert({ name: site.name, tokenSha256: site.tokenSha256, lastSeenAt: null, backend: null, agentVersion: null, trainExams: null, valExams: null });
      }
    }
    this.credentials = listed.map((site) => ({ name: site.name, hash: Buffer.from(site.tokenSha256, 'hex') }));
    this.log.info({ sites: listed.map((s) => s.name) }, `loaded ${listed.length} sites from ${this.config.sitesFile}`);
  }

  /**
   * Returns the name of the site whose token hash matches `token`, or null.
   * Every stored hash is compared in constant time, so the time taken does not
   * reveal which site, if any, came close.
   */
  authenticate(token: string): string | null {
    const digest = createHash('sha256').update(token, 'utf8').digest();
    let match: string | null = null;
    for (const credential of this.credentials) {
      if (timingSafeEqual(digest, credential.hash) && match === null) match = credential.name;
    }
    return match;
  }

  async recordSeen(site: string): Promise<void> {
    await this.sites.update({ name: site }, { lastSeenAt: this.clock.nowIso() });
  }

  async recordHello(site: string, hello: SiteHello): Promise<void> {
    await this.sites.update(
      { name: site },
      {
        lastSeenAt: this.clock.nowIso(),
        backend: hello.backend,
        agentVersion: hello.agentVersion,
        trainExams: hello.trainExams,
        valExams: hello.valExams,
      },
    );
  }

  async list(): Promise<SiteEntity[]> {
    return this.sites.find({ order: { name: 'ASC' } });
  }
}
