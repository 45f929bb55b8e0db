import { afterEach, describe, expect, it } from 'vitest';
import { FakeAgent } from './support/fake-agent';
import { sitesCommand } from '../src/cli/sites-command';
import { TOKENS, startFixture, type Fixture } from './support/fixtures';

describe('site revocation', () => {
  let fixture: Fixture | null = null;
  const agents: FakeAgent[] = [];

  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.close();
    await fixture?.cleanup();
    fixture = null;
  });

  describe('when another process revokes a connected site', () => {
    it('closes its connection and rejects it within a second', async () => {
      fixture = await startFixture();
      const agent = FakeAgent.forToken(fixture.baseUrl, TOKENS['site-a']);
      agents.push(agent);
      await agent.connect();
      const closed = new Promise<number>((resolve) => agent.socket.once('disconnect', () => resolve(Date.now())));

      // `sites revoke` opens its own database connection, as it does when run from another process.
      const output = { stdout: () => {}, stderr: () => {} };
      expect(await sitesCommand(['revoke', 'site-a', '--data-dir', fixture.dataDir], { DATABASE_URL: fixture.database.env.DATABASE_URL }, output)).toBe(0);
      const revokedAt = Date.now();

      const closedAfterMs = (await closed) - revokedAt;
      expect(closedAfterMs).toBeLessThan(1000);
      const retry = FakeAgent.forToken(fixture.baseUrl, TOKENS['site-a']);
      agents.push(retry);
      const error = await retry.connect().then(
        () => null,
        (rejection: Error & { data?: { code?: string } }) => rejection,
      );
      expect(error?.data?.code).toBe('auth_revoked');
      expect(Date.now() - revokedAt).toBeLessThan(1000);
    });
  });
});
