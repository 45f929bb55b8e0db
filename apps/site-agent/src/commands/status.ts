import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { AgentStatusRecord } from '../federation/agent-status';
import { parseCommand, positiveInteger, UsageError } from './args';

/**
 * `status --status-file FILE [--json] [--check] [--max-reconnecting-s N]`:
 * prints what a running agent wrote to its status file: the connection, the
 * current round and what it has sent so far. With --check the exit status
 * is 0 only when the agent is healthy, for container health checks.
 */
export async function statusCommand(args: string[], write: (text: string) => void = (text) => process.stdout.write(text)): Promise<number> {
  const { values } = parseCommand(args, {
    'status-file': { type: 'string' },
    json: { type: 'boolean', default: false },
    check: { type: 'boolean', default: false },
    'max-reconnecting-s': { type: 'string' },
  });
  if (!values['status-file']) throw new UsageError('--status-file FILE is required: the file given to run --status-file');
  const maxReconnectingS = positiveInteger(values['max-reconnecting-s'], 'max-reconnecting-s', 300);
  const path = resolve(values['status-file']);

  let record: AgentStatusRecord;
  try {
    record = JSON.parse(await readFile(path, 'utf8')) as AgentStatusRecord;
  } catch (error) {
    write(`no agent status in ${path}: ${(error as Error).message}; is an agent running with --status-file ${path}?\n`);
    return 1;
  }
  if (values.json) write(`${JSON.stringify(record, null, 2)}\n`);
  else write(formatStatus(record, processAlive(record.pid)));
  if (!values.check) return 0;
  return healthy(record, processAlive(record.pid), maxReconnectingS, Date.now()) ? 0 : 1;
}

/**
 * Returns whether the agent counts as healthy: its process runs, and it is
 * connected, finished, or has been reconnecting for at most `maxReconnectingS`.
 */
export function healthy(record: AgentStatusRecord, alive: boolean, maxReconnectingS: number, nowMs: number): boolean {
  if (!alive) return record.connection === 'finished';
  switch (record.connection) {
    case 'connected':
    case 'finished':
      return true;
    case 'connecting':
    case 'reconnecting':
      return nowMs - Date.parse(record.connectionSince) <= maxReconnectingS * 1000;
    case 'rejected':
      return false;
  }
}

/** Formats a status record as the lines `site-agent status` prints. */
export function formatStatus(record: AgentStatusRecord, alive: boolean): string {
  const lines: string[] = [];
  const process = alive ? `agent process ${record.pid}` : `agent process ${record.pid} is not running`;
  const reconnects = record.reconnects === 1 ? '1 reconnect' : `${record.reconnects} reconnects`;
  lines.push(`connection  ${record.connection} to ${record.coordinator} since ${record.connectionSince} (${reconnects}; ${process})`);
  lines.push(`site        ${record.site ?? 'not joined yet'}${record.experiment ? `, experiment ${record.experiment}` : ''}`);
  if (record.task) {
    const kind = record.task.kind === 'train' ? 'training' : 'evaluating';
    lines.push(`round       ${record.task.round}: ${kind} model version ${record.task.modelVersion} since ${record.task.startedAt}`);
  } else {
    lines.push(`round       idle${record.lastRound === null ? '' : `, last round ${record.lastRound}`}`);
  }
  const sent = record.sent;
  lines.push(
    `sent        ${sent.messages} messages: ${sent.updates} updates, ${sent.metricsReports} metrics reports, ` +
      `${(sent.bytes / (1 << 20)).toFixed(1)} MiB of weights${sent.lastAt ? `, last at ${sent.lastAt}` : ''}`,
  );
  lines.push(`updated     ${record.updatedAt}`);
  return `${lines.join('\n')}\n`;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
