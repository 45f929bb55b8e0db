import { Controller, Get, Inject } from '@nestjs/common';
import { SiteRegistry } from '../sites/site-registry.service';
import { SiteSessions } from '../sites/site-sessions';

@Controller('sites')
export class SitesController {
  constructor(
    @Inject(SiteRegistry) private readonly registry: SiteRegistry,
    @Inject(SiteSessions) private readonly sessions: SiteSessions,
  ) {}

  @Get()
  async list() {
    const sites = await this.registry.list();
    return sites.map((site) => ({
      name: site.name,
      online: this.sessions.isOnline(site.name),
      lastSeenAt: site.lastSeenAt,
      backend: site.backend,
      agentVersion: site.agentVersion,
      trainExams: site.trainExams,
      valExams: site.valExams,
    }));
  }
}
