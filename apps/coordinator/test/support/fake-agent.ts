import { io, type Socket } from 'socket.io-client';
import {
  PROTOCOL_VERSION,
  describePayload,
  sha256Hex,
  sliceChunk,
  type Ack,
  type AgentToCoordinatorEvents,
  type CoordinatorToAgentEvents,
  type PayloadRef,
  type SiteHello,
  type UpdateBeginReply,
  type UpdateCommitReply,
} from '@covnet/protocol';

type ClientSocket = Socket<CoordinatorToAgentEvents, AgentToCoordinatorEvents>;

export const HELLO: SiteHello = {
  agentVersion: '0.0.0-test',
  backend: 'cpu',
  backbone: 'test-tiny',
  inputSize: 32,
  trainExams: { covid19: 1, cap: 1, non_pneumonia: 1 },
  valExams: { covid19: 1, cap: 1, non_pneumonia: 1 },
};

/**
 * A site agent reduced to its protocol: it connects, sends messages and
 * queues every event it receives, so a test can drive each step.
 */
export class FakeAgent {
  readonly socket: ClientSocket;
  private readonly received: { event: string; payload: any }[] = [];
  private readonly waiters: { event: string; resolve: (payload: any) => void }[] = [];

  constructor(baseUrl: string, auth: Record<string, unknown>) {
    this.socket = io(baseUrl, { auth, autoConnect: false, transports: ['websocket'], reconnection: false });
    this.socket.onAny((event: string, payload: unknown) => {
      const index = this.waiters.findIndex((w) => w.event === event);
      if (index >= 0) this.waiters.splice(index, 1)[0].resolve(payload);
      else this.received.push({ event, payload });
    });
  }

  static forToken(baseUrl: string, token: string): FakeAgent {
    return new FakeAgent(baseUrl, { token, protocolVersion: PROTOCOL_VERSION });
  }

  /** Connects, or rejects with the connect_error, whose `data` contains the error code. */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('connect_error', (error) => reject(error));
      this.socket.connect();
    });
  }

  /** Resolves with the next payload of `event`, including one that arrived earlier. */
  next<T = any>(event: string, timeoutMs = 10_000): Promise<T> {
    const index = this.received.findIndex((r) => r.event === event);
    if (index >= 0) return Promise.resolve(this.received.splice(index, 1)[0].payload);
    return new Promise<T>((resolve, reject) => {
      const waiter = { event, resolve };
      this.waiters.push(waiter);
      setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          reject(new Error(`no ${event} within ${timeoutMs} ms`));
        }
      }, timeoutMs);
    });
  }

  /** Emits an event with any payload, valid or not, and resolves with its acknowledgement. */
  request<T extends object = object>(event: string, payload: unknown): Promise<Ack<T>> {
    return (this.socket as unknown as Socket).timeout(5000).emitWithAck(event, payload);
  }

  async hello(hello: SiteHello = HELLO): Promise<Ack> {
    return this.request('site:hello', hello);
  }

  /**
   * Pulls every chunk of a model version and checks the announced SHA-256.
   * Without `experiment` the request names none, as agents did before coordinators ran several.
   */
  async pullModel(version: number, ref: PayloadRef, experiment?: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let index = 0; index < ref.chunkCount; index++) {
      const ack = await this.request<{ data: Buffer }>('model:chunk', { ...named(experiment), version, index });
      if (!ack.ok) throw new Error(`model:chunk ${index} failed: ${ack.error.code}`);
      parts.push(Buffer.from(ack.data));
    }
    const payload = Buffer.concat(parts);
    if (sha256Hex(payload) !== ref.sha256) throw new Error('pulled model does not match its SHA-256');
    return payload;
  }

  /** Begins an upload of `payload` for a round; returns the ack with the upload id. */
  async begin(round: number, modelVersion: number, numExamples: number, payload: Uint8Array, chunkBytes: number, ref?: PayloadRef, experiment?: string) {
    return this.request<UpdateBeginReply>('update:begin', {
      ...named(experiment),
      round,
      modelVersion,
      numExamples,
      trainLoss: 0.5,
      payload: ref ?? describePayload(payload, chunkBytes),
    });
  }

  async sendChunk(uploadId: string, payload: Uint8Array, ref: PayloadRef, index: number) {
    return this.request<{ nextIndex: number }>('update:chunk', { uploadId, index, data: Buffer.from(sliceChunk(payload, ref, index)) });
  }

  /** Uploads and commits a whole update; returns the commit's acknowledgement. */
  async upload(round: number, modelVersion: number, numExamples: number, payload: Uint8Array, chunkBytes = 40, experiment?: string) {
    const ref = describePayload(payload, chunkBytes);
    const begun = await this.begin(round, modelVersion, numExamples, payload, chunkBytes, ref, experiment);
    if (!begun.ok) return begun;
    // The coordinator has this update already: there is nothing to send.
    if (begun.duplicate) return begun;
    for (let index = begun.nextIndex; index < ref.chunkCount; index++) {
      const ack = await this.sendChunk(begun.uploadId, payload, ref, index);
      if (!ack.ok) return ack;
    }
    return this.request<UpdateCommitReply>('update:commit', { uploadId: begun.uploadId });
  }

  close(): void {
    this.socket.disconnect();
  }
}

/** Returns the `experiment` field of a message, or no field at all. */
function named(experiment: string | undefined): { experiment?: string } {
  return experiment === undefined ? {} : { experiment };
}
