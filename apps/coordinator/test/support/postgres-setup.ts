import { Socket } from 'node:net';
import { beforeAll, beforeEach } from 'vitest';
import { TEST_POSTGRES_URL } from './test-database';

// Setup file of the coordinator-postgres test project: where no PostgreSQL
// server listens, every test of the project is skipped, saying why.
let listening = false;

beforeAll(async () => {
  listening = await accepts(TEST_POSTGRES_URL);
  if (!listening) {
    process.stderr.write(`coordinator tests on PostgreSQL skipped: no server accepts connections at ${new URL(TEST_POSTGRES_URL).host}\n`);
  }
});

beforeEach((context) => {
  if (!listening) context.skip();
});

function accepts(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.connect(Number(port || 5432), hostname);
  });
}
