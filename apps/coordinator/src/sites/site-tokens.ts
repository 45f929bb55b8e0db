import { createHash, randomBytes } from 'node:crypto';
import type { Repository } from 'typeorm';
import { SiteEntity } from '../persistence/entities';

export const SITE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Error raised when a site cannot be added or revoked. The message gives the reason. */
export class SiteAdminError extends Error {
  override name = 'SiteAdminError';

  constructor(
    readonly reason: 'invalid_name' | 'exists' | 'not_found' | 'already_revoked',
    message: string,
  ) {
    super(message);
  }
}

/** Returns the lowercase hex SHA-256 of a site token, the only form in which it is stored. */
export function hashSiteToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * Adds a site with a new random token (32 bytes, base64url) and returns the
 * token; only its hash is stored, so it cannot be shown again. A revoked site
 * of the same name is given the new token and becomes active again.
 * @throws SiteAdminError `invalid_name`, or `exists` when an active site has that name.
 */
export async function addSite(sites: Repository<SiteEntity>, name: string, nowIso: string): Promise<{ site: SiteEntity; token: string }> {
  if (!SITE_NAME_PATTERN.test(name)) {
    throw new SiteAdminError('invalid_name', `site name "${name}" is invalid: expected 1-64 letters, digits, dot, dash or underscore, starting with a letter or digit`);
  }
  const token = randomBytes(32).toString('base64url');
  const existing = await sites.findOne({ where: { name } });
  if (existing && existing.revokedAt === null) {
    throw new SiteAdminError('exists', `site ${name} already exists; revoke it first to give it a new token`);
  }
  const site = existing ?? sites.create({ name, lastSeenAt: null, backend: null, gpu: null, agentVersion: null, trainExams: null, valExams: null });
  site.tokenSha256 = hashSiteToken(token);
  site.addedAt = nowIso;
  site.revokedAt = null;
  return { site: await sites.save(site), token };
}

/**
 * Revokes a site's token. The coordinator closes the site's connection and
 * rejects its next handshake.
 * @throws SiteAdminError `not_found` or `already_revoked`.
 */
export async function revokeSite(sites: Repository<SiteEntity>, name: string, nowIso: string): Promise<SiteEntity> {
  const site = await sites.findOne({ where: { name } });
  if (!site) throw new SiteAdminError('not_found', `site ${name} does not exist`);
  if (site.revokedAt !== null) throw new SiteAdminError('already_revoked', `site ${name} was already revoked at ${site.revokedAt}`);
  site.revokedAt = nowIso;
  return sites.save(site);
}
