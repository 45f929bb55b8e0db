import { Body, ConflictException, Controller, Get, HttpCode, Inject, NotFoundException, Param, Post, BadRequestException } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { SiteRegistry } from '../sites/site-registry.service';
import { SiteSessions } from '../sites/site-sessions';
import { SiteAdminError } from '../sites/site-tokens';
import type { SiteEntity } from '../persistence/entities';
import { parseNameParam } from './name-param';

@ApiTags('sites')
@ApiBearerAuth()
@Controller('sites')
export class SitesController {
  constructor(
    @Inject(SiteRegistry) private readonly registry: SiteRegistry,
    @Inject(SiteSessions) private readonly sessions: SiteSessions,
  ) {}

  @Get()
  @ApiOperation({ summary: 'Every site, online or not, with what its last site:hello reported' })
  async list() {
    const sites = await this.registry.list();
    return sites.map((site) => this.view(site));
  }

  @Post()
  @ApiOperation({ summary: 'Add a site; the response carries its token, which is not stored and cannot be shown again' })
  @ApiBody({ schema: { type: 'object', required: ['name'], properties: { name: { type: 'string', example: 'hospital-a' } } } })
  async add(@Body() body: unknown) {
    const name = (body as { name?: unknown } | null)?.name;
    if (typeof name !== 'string') throw new BadRequestException('body must be {"name": "<site name>"}');
    try {
      const { site, token } = await this.registry.add(name);
      return { ...this.view(site), token };
    } catch (error) {
      throw httpError(error);
    }
  }

  @Post(':name/revoke')
  @HttpCode(200)
  @ApiOperation({ summary: "Revoke a site's token; its connection is closed at once, even mid-round" })
  @ApiParam({ name: 'name', type: String })
  async revoke(@Param('name') name: string) {
    try {
      return this.view(await this.registry.revoke(parseNameParam('site name', name)));
    } catch (error) {
      throw httpError(error);
    }
  }

  private view(site: SiteEntity) {
    return {
      name: site.name,
      online: this.sessions.isOnline(site.name),
      revokedAt: site.revokedAt,
      addedAt: site.addedAt,
      lastSeenAt: site.lastSeenAt,
      backend: site.backend,
      gpu: site.gpu,
      agentVersion: site.agentVersion,
      trainExams: site.trainExams,
      valExams: site.valExams,
    };
  }
}

function httpError(error: unknown): unknown {
  if (!(error instanceof SiteAdminError)) return error;
  switch (error.reason) {
    case 'invalid_name':
      return new BadRequestException(error.message);
    case 'not_found':
      return new NotFoundException(error.message);
    case 'exists':
    case 'already_revoked':
      return new ConflictException(error.message);
  }
}
