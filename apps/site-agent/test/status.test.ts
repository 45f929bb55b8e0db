import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProgress } from '../src/progress';
import { AgentStatus } from '../src/federation/agent-status';
import { healthy, statusCommand } from '../src/commands/status';

function recorder(isTTY: boolean) {
  const chunks: string[] = [];
  return { stream: { isTTY, columns: 120, write: (text: string) => chunks.push(text) }, chunks };
}

describe('startProgress', () => {
  describe('when the stream is not a terminal', () => {
    it('writes plain lines at each quarter', () => {
      const { stream, chunks } = recorder(false);
      let clock = 0;
      const progress = startProgress('preprocessing', 8, stream, () => clock);
      for (let done = 1; done <= 8; done++) {
        clock += 500;
        progress.update(done);
      }
      progress.finish();
      expect(chunks).toEqual([
        'preprocessing: started (8 items)\n',
        'preprocessing: 2/8 (25%), 1.0 s\n',
        'preprocessing: 4/8 (50%), 2.0 s\n',
        'preprocessing: 6/8 (75%), 3.0 s\n',
        'preprocessing: done in 4.0 s\n',
      ]);
      expect(chunks.join('')).not.toContain('\r');
    });
  });

  describe('when the stream is a terminal', () => {
    it('redraws one line with a bar', () => {
      const { stream, chunks } = recorder(true);
      let clock = 0;
      const progress = startProgress('preprocessing', 4, stream, () => clock);
      clock = 200;
      progress.update(1);
      clock = 250;
      progress.update(2); // within the redraw interval: not drawn
      clock = 400;
      progress.update(3);
      progress.finish();
      expect(chunks[0]).toBe('\rpreprocessing [######..................] 25% 1/4 0.2 s  ');
      expect(chunks[1]).toBe('\rpreprocessing [##################......] 75% 3/4 0.4 s  ');
      expect(chunks).toHaveLength(4);
      expect(chunks[3]).toBe('\npreprocessing: done in 0.4 s\n');
    });
  });
});

describe('site-agent status', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'agent-status-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('when an agent wrote its status', () => {
    it('prints connection, round and messages sent', async () => {
      const file = join(dir, 'status.json');
      const status = new AgentStatus('http://127.0.0.1:8080', file, () => new Date('2026-01-02T03:04:05.000Z'));
      status.connection('connected');
      status.joined('hospital-a', 'covnet');
      status.taskStarted('train', 3, 2);
      status.sent('update:begin', 0);
      status.sent('update:chunk', 1 << 20);
      status.sent('update:commit', 0);
      const written = JSON.parse(await readFile(file, 'utf8'));
      expect(written.sent).toEqual({ messages: 3, updates: 1, metricsReports: 0, bytes: 1 << 20, lastAt: '2026-01-02T03:04:05.000Z' });

      let output = '';
      expect(await statusCommand(['--status-file', file], (text) => (output += text))).toBe(0);
      expect(output).toContain(`connection  connected to http://127.0.0.1:8080 since 2026-01-02T03:04:05.000Z (0 reconnects; agent process ${process.pid})`);
      expect(output).toContain('site        hospital-a, experiment covnet');
      expect(output).toContain('round       3: training model version 2 since 2026-01-02T03:04:05.000Z');
      expect(output).toContain('sent        3 messages: 1 updates, 0 metrics reports, 1.0 MiB of weights');

      status.taskEnded(3);
      status.connection('reconnecting');
      output = '';
      await statusCommand(['--status-file', file], (text) => (output += text));
      expect(output).toContain('round       idle, last round 3');
      expect(output).toContain('reconnecting to http://127.0.0.1:8080');
      expect(output).toContain('(1 reconnect;');
    });
  });

  describe('when there is no status file', () => {
    it('exits 1 and says where it looked', async () => {
      let output = '';
      expect(await statusCommand(['--status-file', join(dir, 'missing.json')], (text) => (output += text))).toBe(1);
      expect(output).toContain('missing.json');
    });
  });

  describe('healthy', () => {
    const base = { pid: 1, coordinator: 'x', site: null, experiment: null, reconnects: 0, task: null, lastRound: null, sent: { messages: 0, updates: 0, metricsReports: 0, bytes: 0, lastAt: null }, updatedAt: '' };
    const at = (seconds: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, seconds)).toISOString();
    const now = Date.UTC(2026, 0, 1, 0, 10, 0);

    it.each([
      ['connected', true, at(0), true],
      ['reconnecting', true, at(590), true],
      ['reconnecting', true, at(0), false],
      ['rejected', true, at(599), false],
      ['connected', false, at(0), false],
      ['finished', false, at(0), true],
    ] as const)('%s, process running %s, since %s: %s', (connection, alive, since, expected) => {
      expect(healthy({ ...base, connection, connectionSince: since }, alive, 300, now)).toBe(expected);
    });
  });
});
