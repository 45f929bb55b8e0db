import { readFileSync } from 'node:fs';
import { io, type Socket } from 'socket.io-client';
import { AGENT_EVENTS, COORDINATOR_EVENTS, PROTOCOL_VERSION, decodeWeights, encodeWeights, type EvaluateTask, type TrainTask, type WireDtype } from '@covnet/protocol';
import { downloadModel, uploadUpdate } from '../apps/site-agent/src/federation/transfer';
import { request } from '../apps/site-agent/src/federation/socket-call';
import { summariseValidation } from '../apps/site-agent/src/evaluation/site-metrics';

/** Measurements of one site in one round. Times are Date.now() milliseconds, which both processes share. */
export interface SiteRoundRecord {
  site: string;
  round: number;
  trainTaskAt: number;
  evaluateTaskAt: number | null;
  trainingMs: number;
  downloadBytes: number;
  uploadBytes: number;
}

export interface AgentsOptions {
  url: string;
  tokens: Record<string, string>;
  initialModelFile: string;
  dtype: WireDtype;
  trainingMs: number;
}

const EXAMS = { covid19: 10, cap: 10, non_pneumonia: 10 };
// Three validation exams, one per class, each predicted correctly.
const VALIDATION = summariseValidation(
  [
    [0.8, 0.1, 0.1],
    [0.1, 0.8, 0.1],
    [0.1, 0.1, 0.8],
  ],
  [0, 1, 2],
);

/**
 * Returns the site's update: the initial model with every value moved by a
 * small site-specific amount, encoded once before the first round, so that
 * the agents spend no CPU time inside a round apart from the transfers.
 */
function perturbedUpdate(initial: Buffer, siteIndex: number, dtype: WireDtype): Buffer {
  const { tensors, meta } = decodeWeights(initial);
  for (const tensor of tensors) {
    const data = tensor.data;
    for (let i = 0; i < data.length; i++) data[i] += 0.001 * (siteIndex + 1) * ((i % 7) - 3);
  }
  return encodeWeights(tensors, dtype, meta);
}

/**
 * Runs one protocol-level agent per site in this process. Training is a fixed
 * sleep of `trainingMs` after the global model is downloaded, and evaluation
 * sends fixed metrics at once. Resolves with every site's records when
 * the coordinator sends federation:done.
 */
export function runAgents(options: AgentsOptions): Promise<SiteRoundRecord[]> {
  const initial = readFileSync(options.initialModelFile);
  const records: SiteRoundRecord[] = [];
  const sites = Object.entries(options.tokens);
  return Promise.all(
    sites.map(([site, token], index) => {
      const update = perturbedUpdate(initial, index, options.dtype);
      const socket: Socket = io(options.url, { auth: { token, protocolVersion: PROTOCOL_VERSION }, transports: ['websocket'] });
      return new Promise<void>((resolve, reject) => {
        let queue = Promise.resolve();
        const enqueue = (task: () => Promise<void>) => {
          queue = queue.then(task).catch((error: Error) => {
            socket.close();
            reject(error);
          });
        };
        socket.on('connect', () => enqueue(async () => void (await request(socket, AGENT_EVENTS.hello, { agentVersion: 'bench', backend: 'none', trainExams: EXAMS, valExams: EXAMS }))));
        socket.on('connect_error', (error) => reject(new Error(`site ${site} could not connect: ${error.message}`)));
        socket.on(COORDINATOR_EVENTS.trainTask, (task: TrainTask) => {
          const record: SiteRoundRecord = { site, round: task.round, trainTaskAt: Date.now(), evaluateTaskAt: null, trainingMs: 0, downloadBytes: 0, uploadBytes: 0 };
          records.push(record);
          enqueue(async () => {
            const model = await downloadModel(socket, task.experiment, task.modelVersion, task.model);
            record.downloadBytes = model.byteLength;
            const started = Date.now();
            await new Promise((done) => setTimeout(done, options.trainingMs));
            record.trainingMs = Date.now() - started;
            const header = { experiment: task.experiment, round: task.round, modelVersion: task.modelVersion, numExamples: 30, trainLoss: 0.5 };
            await uploadUpdate(socket, header, update);
            record.uploadBytes = update.byteLength;
          });
        });
        socket.on(COORDINATOR_EVENTS.evaluateTask, (task: EvaluateTask) => {
          const record = records.find((r) => r.site === site && r.round === task.round);
          if (record) record.evaluateTaskAt = Date.now();
          enqueue(async () => {
            const report = { experiment: task.experiment, round: task.round, modelVersion: task.modelVersion, trainExams: 30, metrics: VALIDATION };
            await request(socket, AGENT_EVENTS.metricsReport, report);
          });
        });
        socket.on(COORDINATOR_EVENTS.done, (_payload: unknown, ack?: (reply: { ok: true }) => void) => {
          ack?.({ ok: true });
          socket.close();
          resolve();
        });
      });
    }),
  ).then(() => records);
}

// Child-process entry: reads AgentsOptions as JSON from the argument and prints the records as JSON.
if (require.main === module) {
  runAgents(JSON.parse(process.argv[2]) as AgentsOptions).then(
    (records) => process.stdout.write(`${JSON.stringify(records)}\n`),
    (error: Error) => {
      process.stderr.write(`${error.stack}\n`);
      process.exitCode = 1;
    },
  );
}
