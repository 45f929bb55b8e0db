import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';

/** URL path of the dashboard page. */
export const DASHBOARD_PATH = '/dashboard/';

/**
 * Serves the dashboard's static page at /dashboard/ and redirects / to it.
 * The page contains no data. It asks for the admin token and reads everything
 * through the REST API and the `/dashboard` socket namespace, which require it.
 */
export function serveDashboard(app: NestExpressApplication): void {
  app.useStaticAssets(join(__dirname, 'public'), { prefix: DASHBOARD_PATH, index: 'index.html' });
  app.getHttpAdapter().get('/', (_request: unknown, response: { redirect(status: number, url: string): void }) => {
    response.redirect(302, DASHBOARD_PATH);
  });
}
