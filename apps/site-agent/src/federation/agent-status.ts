import { renameSync, writeFileSync } from 'node:fs';

/** State of the agent's connection to the coordinator. */
export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'rejected' | 'finished';

/** Agent state that `site-agent status` prints, written by `run --status-file` on every change. */
export interface AgentStatusRecord {
  pid: number;
  coordinator: string;
  connection: ConnectionState;
  /** ISO 8601 time the connection entered its state. */
  connectionSince: string;
  site: string | null;
  experiment: string | null;
  reconnects: number;
  /** Task in progress, or null while idle. */
  task: { kind: 'train' | 'evaluate'; round: number; modelVersion: number; startedAt: string } | null;
  lastRound: number | null;
  sent: { messages: number; updates: number; metricsReports: number; bytes: number; lastAt: string | null };
  updatedAt: string;
}

/**
 * The agent's status, kept in memory and, when a file is given, mirrored to
 * it as JSON after every change. The file is replaced by a rename, so a
 * reader never sees half a record.
 */
export class AgentStatus {
  private readonly record: AgentStatusRecord;

  constructor(
    coordinator: string,
    private readonly file?: string,
    private readonly now: () => Date = () => new Date(),
  ) {
    const at = this.now().toISOString();
    this.record = {
      pid: process.pid,
      coordinator,
      connection: 'connecting',
      connectionSince: at,
      site: null,
      experiment: null,
      reconnects: 0,
      task: null,
      lastRound: null,
      sent: { messages: 0, updates: 0, metricsReports: 0, bytes: 0, lastAt: null },
      updatedAt: at,
    };
    this.write();
  }

  get current(): Readonly<AgentStatusRecord> {
    return this.record;
  }

  connection(state: ConnectionState): void {
    if (state === 'reconnecting' && this.record.connection !== 'reconnecting') this.record.reconnects += 1;
    if (state !== this.record.connection) {
      this.record.connection = state;
      this.record.connectionSince = this.now().toISOString();
    }
    this.write();
  }

  joined(site: string, experiment: string): void {
    this.record.site = site;
    this.record.experiment = experiment;
    this.write();
  }

  taskStarted(kind: 'train' | 'evaluate', round: number, modelVersion: number): void {
    this.record.task = { kind, round, modelVersion, startedAt: this.now().toISOString() };
    this.write();
  }

  taskEnded(round: number): void {
    this.record.task = null;
    this.record.lastRound = round;
    this.write();
  }

  /** Counts one outgoing message with the bytes of its binary parts. */
  sent(event: string, binaryBytes: number): void {
    const sent = this.record.sent;
    sent.messages += 1;
    sent.bytes += binaryBytes;
    if (event === 'update:commit') sent.updates += 1;
    if (event === 'metrics:report') sent.metricsReports += 1;
    sent.lastAt = this.now().toISOString();
    this.write();
  }

  private write(): void {
    this.record.updatedAt = this.now().toISOString();
    if (!this.file) return;
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(this.record, null, 2)}\n`);
    renameSync(tmp, this.file);
  }
}
