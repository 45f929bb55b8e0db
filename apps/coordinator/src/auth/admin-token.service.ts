import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import type { Logger } from 'pino';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/config';
import { ROOT_LOGGER } from '../logging/logger';

/** File in the data dir holding the generated admin token when COVNET_ADMIN_TOKEN is not set. */
export const ADMIN_TOKEN_FILE = 'admin-token';

/** The admin token of the REST API, the dashboard and its socket namespace. */
@Injectable()
export class AdminToken {
  private digest: Buffer | null = null;
  private readonly log: Logger;

  constructor(
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    @Inject(ROOT_LOGGER) rootLogger: Logger,
  ) {
    this.log = rootLogger.child({ context: 'auth' });
  }

  /**
   * Takes the token from COVNET_ADMIN_TOKEN, or else from `<data dir>/admin-token`,
   * which is created with a random token (mode 0600) on the first start.
   */
  async init(): Promise<void> {
    let token = this.config.adminToken;
    if (token === null) {
      const path = join(this.config.dataDir, ADMIN_TOKEN_FILE);
      token = await readFile(path, 'utf8').then(
        (text) => text.trim(),
        (error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOENT') throw error;
          return null;
        },
      );
      if (token === null || token === '') {
        token = randomBytes(24).toString('base64url');
        await writeFile(path, `${token}\n`, { mode: 0o600 });
        this.log.info({ path }, `COVNET_ADMIN_TOKEN is not set: created an admin token in ${path}`);
      } else {
        this.log.info({ path }, `COVNET_ADMIN_TOKEN is not set: using the admin token in ${path}`);
      }
    }
    this.digest = sha256(token);
  }

  /** Returns whether `token` is the admin token, comparing SHA-256 digests in constant time. */
  matches(token: string | undefined | null): boolean {
    if (!this.digest) throw new Error('AdminToken.init() has not run');
    if (typeof token !== 'string' || token === '') return false;
    return timingSafeEqual(sha256(token), this.digest);
  }

  /** Returns whether an HTTP Authorization header carries the admin token as a bearer token. */
  matchesHeader(header: string | undefined): boolean {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
    return match !== null && this.matches(match[1]);
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
