import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DataSource, type DataSourceOptions } from 'typeorm';
import { ConfigError, databaseFromEnv } from '../config/config';
import { typeOrmOptions } from '../persistence/database';
import { SiteEntity } from '../persistence/entities';
import { SiteAdminError, addSite, revokeSite } from '../sites/site-tokens';

export const SITES_USAGE = `usage: coordinator sites <add NAME | revoke NAME | list> --data-dir DIR
  add NAME      add a site and print its new token once; only its SHA-256 is stored
  revoke NAME   revoke a site's token; a running coordinator closes its connection within a second
  list          list the sites with their state
The database is the coordinator's: SQLite in --data-dir, or PostgreSQL from DATABASE_URL.`;

interface Output {
  stdout(text: string): void;
  stderr(text: string): void;
}

/**
 * Runs `coordinator sites ...` against the coordinator's database, which it
 * migrates first if needed. Returns the exit status: 0 done, 1 refused
 * (e.g. the site exists), 2 invalid command line.
 */
export async function sitesCommand(argv: string[], env: Readonly<Record<string, string | undefined>>, output: Output): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { 'data-dir': { type: 'string' } }, allowPositionals: true, strict: true });
  } catch (error) {
    output.stderr(`coordinator sites: ${(error as Error).message}\n${SITES_USAGE}\n`);
    return 2;
  }
  const [action, name, ...extra] = parsed.positionals;
  const needsName = action === 'add' || action === 'revoke';
  if (!['add', 'revoke', 'list'].includes(action ?? '') || (needsName && !name) || (!needsName && name) || extra.length > 0) {
    output.stderr(`coordinator sites: expected add NAME, revoke NAME or list\n${SITES_USAGE}\n`);
    return 2;
  }
  const dataDir = parsed.values['data-dir'];
  if (!dataDir && !env.DATABASE_URL) {
    output.stderr(`coordinator sites: --data-dir DIR is required unless DATABASE_URL is set\n${SITES_USAGE}\n`);
    return 2;
  }

  let database;
  try {
    database = databaseFromEnv(env.DATABASE_URL, resolve(dataDir ?? '.'));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    output.stderr(`coordinator sites: ${error.message}\n`);
    return 2;
  }
  if (database.type === 'sqlite') await mkdir(resolve(dataDir!), { recursive: true });
  const dataSource = new DataSource(typeOrmOptions(database) as DataSourceOptions);
  await dataSource.initialize();
  try {
    const sites = dataSource.getRepository(SiteEntity);
    const now = new Date().toISOString();
    switch (action) {
      case 'add': {
        const { token } = await addSite(sites, name, now);
        output.stderr(`site ${name} added. Its token follows; it is shown only this once, so give it to the site's admin now (COVNET_SITE_TOKEN).\n`);
        output.stdout(`${token}\n`);
        return 0;
      }
      case 'revoke':
        await revokeSite(sites, name, now);
        output.stderr(`site ${name} revoked; a running coordinator closes its connection within a second\n`);
        return 0;
      default:
        for (const site of await sites.find({ order: { name: 'ASC' } })) {
          output.stdout(`${site.name}\t${site.revokedAt === null ? 'active' : `revoked ${site.revokedAt}`}\tlast seen ${site.lastSeenAt ?? 'never'}\n`);
        }
        return 0;
    }
  } catch (error) {
    if (!(error instanceof SiteAdminError)) throw error;
    output.stderr(`coordinator sites: ${error.message}\n`);
    return 1;
  } finally {
    await dataSource.destroy();
  }
}
