import { z } from 'zod';
import { ProtocolError, type ErrorBody } from './errors';
import { CLASS_NAMES, MAX_CHUNK_BYTES } from './version';

// Binary payloads arrive as Buffer under Node and as Uint8Array or ArrayBuffer
// in other socket.io clients; all three are accepted and handed on as Uint8Array.
const binary = z
  .custom<Uint8Array>(
    (value) => value instanceof Uint8Array || value instanceof ArrayBuffer,
    { message: 'expected binary data (Buffer, Uint8Array or ArrayBuffer)' },
  )
  .transform((value) => (value instanceof ArrayBuffer ? new Uint8Array(value) : value))
  .refine((value) => value.byteLength <= MAX_CHUNK_BYTES, {
    message: `chunk larger than ${MAX_CHUNK_BYTES} bytes`,
  });

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'expected a lowercase hex SHA-256 digest');
/**
 * Largest exam count any message may carry. No hospital archive comes near it,
 * and the bound keeps a forged count from dominating a weighted average.
 */
export const MAX_EXAM_COUNT = 10_000_000;
const count = z.number().int().nonnegative();
const examCount = count.max(MAX_EXAM_COUNT);
const siteName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected 1-64 letters, digits, dot, dash or underscore');
const auc = z.number().min(0).max(1).nullable();

export const classCountsSchema = z
  .object({ covid19: examCount, cap: examCount, non_pneumonia: examCount })
  .strict();
export type ClassCounts = z.infer<typeof classCountsSchema>;

/** Socket handshake `auth` object sent by an agent. */
export const handshakeAuthSchema = z
  .object({
    token: z.string().min(1, 'token is empty').max(512),
    protocolVersion: z.number().int().positive(),
    /**
     * Site the token belongs to, if the agent was given it. The coordinator rejects
     * a token of another site, and counts failed attempts per claimed site.
     */
    site: siteName.optional(),
  })
  .strict();
export type HandshakeAuth = z.infer<typeof handshakeAuthSchema>;

/** Description of a weight payload (codec format) that is fetched in chunks. */
export const payloadRefSchema = z
  .object({
    sha256: sha256Hex,
    byteLength: count,
    chunkCount: z.number().int().positive(),
    chunkBytes: z.number().int().positive().max(MAX_CHUNK_BYTES),
  })
  .strict();
export type PayloadRef = z.infer<typeof payloadRefSchema>;

export const hyperParametersSchema = z
  .object({
    epochs: z.number().int().positive().max(1000),
    learningRate: z.number().positive().max(10),
    batchSize: z.number().int().positive().max(4096),
    proximalMu: z.number().nonnegative().max(100),
  })
  .strict();
export type HyperParameters = z.infer<typeof hyperParametersSchema>;

// ---- agent -> coordinator ----

export const siteHelloSchema = z
  .object({
    agentVersion: z.string().min(1).max(64),
    backend: z.string().min(1).max(64),
    /** GPU the backend runs on, e.g. "NVIDIA A100-SXM4-40GB"; absent on CPU backends and from older agents. */
    gpu: z.string().min(1).max(128).optional(),
    /** Model the agent last loaded; absent before its first round. */
    backbone: z.string().min(1).max(32).optional(),
    inputSize: z.number().int().positive().max(1024).optional(),
    trainExams: classCountsSchema,
    valExams: classCountsSchema,
  })
  .strict();
export type SiteHello = z.infer<typeof siteHelloSchema>;

/**
 * Experiment a model:chunk, update:begin or metrics:report belongs to. It is
 * optional so that agents written before coordinators ran several experiments
 * keep working: without it the coordinator takes its first experiment.
 */
const messageExperiment = z.string().min(1).max(64).optional();

export const modelChunkRequestSchema = z
  .object({ experiment: messageExperiment, version: count, index: count })
  .strict();
export type ModelChunkRequest = z.infer<typeof modelChunkRequestSchema>;

export const updateBeginSchema = z
  .object({
    experiment: messageExperiment,
    round: z.number().int().positive(),
    modelVersion: count,
    numExamples: z.number().int().positive().max(MAX_EXAM_COUNT),
    trainLoss: z.number().finite().nonnegative(),
    payload: payloadRefSchema,
  })
  .strict();
export type UpdateBegin = z.infer<typeof updateBeginSchema>;

export const updateChunkSchema = z
  .object({ uploadId: z.string().min(1).max(128), index: count, data: binary })
  .strict();
export type UpdateChunk = z.infer<typeof updateChunkSchema>;

export const updateCommitSchema = z.object({ uploadId: z.string().min(1).max(128) }).strict();
export type UpdateCommit = z.infer<typeof updateCommitSchema>;

/**
 * Acknowledgement of `update:begin`. `duplicate` is set when the coordinator
 * has already accepted this very update (same experiment, round, site and
 * SHA-256), e.g. a resend after a lost acknowledgement: the agent is done and
 * sends no chunk.
 */
export interface UpdateBeginReply {
  uploadId: string;
  nextIndex: number;
  duplicate?: true;
}

/** Acknowledgement of `update:commit`; `duplicate` as in `UpdateBeginReply`. */
export interface UpdateCommitReply {
  accepted: true;
  duplicate?: true;
}

export const perClassAucSchema = z
  .object({ covid19: auc, cap: auc, non_pneumonia: auc })
  .strict();
export type PerClassAuc = z.infer<typeof perClassAucSchema>;

/** Number of bins in the score histograms from which the coordinator pools AUC across sites. */
export const HISTOGRAM_BINS = 200;
const histogram = z.array(examCount).length(HISTOGRAM_BINS);

/**
 * Aggregate evaluation metrics of one site on its own validation exams. Only
 * counts and summary figures: nothing here identifies an exam or a patient.
 */
export const siteMetricsSchema = z
  .object({
    valExams: examCount,
    loss: z.number().finite().nonnegative().nullable(),
    auc: perClassAucSchema,
    /** confusion[actual][predicted], class order of CLASS_NAMES */
    confusion: z.array(z.array(examCount).length(3)).length(3),
    /** per class: histograms of that class's score for positive and negative exams */
    histograms: z
      .object({
        covid19: z.object({ positive: histogram, negative: histogram }).strict(),
        cap: z.object({ positive: histogram, negative: histogram }).strict(),
        non_pneumonia: z.object({ positive: histogram, negative: histogram }).strict(),
      })
      .strict(),
  })
  .strict()
  .superRefine((metrics, context) => {
    // Every figure describes the same validation exams, so their counts must agree.
    const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
    const confusionTotal = sum(metrics.confusion.map(sum));
    if (confusionTotal !== metrics.valExams) {
      context.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['confusion'],
        message: `counts ${confusionTotal} exams, valExams is ${metrics.valExams}`,
      });
    }
    for (const name of ['covid19', 'cap', 'non_pneumonia'] as const) {
      const { positive, negative } = metrics.histograms[name];
      const total = sum(positive) + sum(negative);
      if (total !== metrics.valExams) {
        context.addIssue({
          code: z.ZodIssueCode.custom,
          path: ['histograms', name],
          message: `counts ${total} exams, valExams is ${metrics.valExams}`,
        });
      }
      if (sum(positive) !== sum(metrics.confusion[CLASS_NAMES.indexOf(name)])) {
        context.addIssue({
          code: z.ZodIssueCode.custom,
          path: ['histograms', name, 'positive'],
          message: `counts ${sum(positive)} positive exams, the confusion matrix has ${sum(metrics.confusion[CLASS_NAMES.indexOf(name)])}`,
        });
      }
    }
  });
export type SiteMetrics = z.infer<typeof siteMetricsSchema>;

export const metricsReportSchema = z
  .object({
    experiment: messageExperiment,
    round: z.number().int().positive(),
    modelVersion: count,
    trainExams: count,
    metrics: siteMetricsSchema,
  })
  .strict();
export type MetricsReport = z.infer<typeof metricsReportSchema>;

// ---- coordinator -> agent ----

export const trainTaskSchema = z
  .object({
    experiment: z.string().min(1).max(64),
    round: z.number().int().positive(),
    modelVersion: count,
    model: payloadRefSchema,
    hyper: hyperParametersSchema,
    deadline: z.string().datetime(),
  })
  .strict();
export type TrainTask = z.infer<typeof trainTaskSchema>;

export const evaluateTaskSchema = z
  .object({
    experiment: z.string().min(1).max(64),
    round: z.number().int().positive(),
    modelVersion: count,
    model: payloadRefSchema,
    deadline: z.string().datetime(),
  })
  .strict();
export type EvaluateTask = z.infer<typeof evaluateTaskSchema>;

export const federationDoneSchema = z
  .object({ experiment: z.string(), rounds: count, finalModelVersion: count })
  .strict();
export type FederationDone = z.infer<typeof federationDoneSchema>;

export const welcomeSchema = z
  .object({ site: siteName, experiment: z.string(), protocolVersion: z.number().int() })
  .strict();
export type Welcome = z.infer<typeof welcomeSchema>;

// ---- acknowledgements ----

export type Ack<T extends object = object> = ({ ok: true } & T) | { ok: false; error: ErrorBody };
export type AckCallback<T extends object = object> = (reply: Ack<T>) => void;

export const errorBodySchema = z.object({ code: z.string(), message: z.string() }).strict();

/** Event names, one map per direction, shared by both ends. */
export const AGENT_EVENTS = {
  hello: 'site:hello',
  modelChunk: 'model:chunk',
  updateBegin: 'update:begin',
  updateChunk: 'update:chunk',
  updateCommit: 'update:commit',
  metricsReport: 'metrics:report',
} as const;

export const COORDINATOR_EVENTS = {
  welcome: 'site:welcome',
  trainTask: 'round:train',
  evaluateTask: 'round:evaluate',
  done: 'federation:done',
} as const;

/** Events an agent emits; each takes a payload and an acknowledgement callback. */
export interface AgentToCoordinatorEvents {
  'site:hello': (payload: SiteHello, ack: AckCallback<Welcome>) => void;
  'model:chunk': (payload: ModelChunkRequest, ack: AckCallback<{ data: Uint8Array }>) => void;
  'update:begin': (payload: UpdateBegin, ack: AckCallback<UpdateBeginReply>) => void;
  'update:chunk': (payload: UpdateChunk, ack: AckCallback<{ nextIndex: number }>) => void;
  'update:commit': (payload: UpdateCommit, ack: AckCallback<UpdateCommitReply>) => void;
  'metrics:report': (payload: MetricsReport, ack: AckCallback) => void;
}

/**
 * Events the coordinator emits to agents. An agent acknowledges
 * `federation:done` on receipt, so that a coordinator about to exit knows
 * which sites have learnt that the federation is over.
 */
export interface CoordinatorToAgentEvents {
  'site:welcome': (payload: Welcome) => void;
  'round:train': (payload: TrainTask) => void;
  'round:evaluate': (payload: EvaluateTask) => void;
  'federation:done': (payload: FederationDone, ack: AckCallback) => void;
}

/** Schemas of every event payload, keyed by event name, for validation at both ends. */
export const EVENT_SCHEMAS = {
  'site:hello': siteHelloSchema,
  'model:chunk': modelChunkRequestSchema,
  'update:begin': updateBeginSchema,
  'update:chunk': updateChunkSchema,
  'update:commit': updateCommitSchema,
  'metrics:report': metricsReportSchema,
  'site:welcome': welcomeSchema,
  'round:train': trainTaskSchema,
  'round:evaluate': evaluateTaskSchema,
  'federation:done': federationDoneSchema,
} as const;
export type EventName = keyof typeof EVENT_SCHEMAS;

/**
 * Validates an event payload against its schema.
 * @throws ProtocolError `invalid_message` naming the event and the first invalid field.
 */
export function parseEvent<E extends EventName>(
  event: E,
  payload: unknown,
): z.output<(typeof EVENT_SCHEMAS)[E]> {
  const result = EVENT_SCHEMAS[event].safeParse(payload);
  if (result.success) return result.data as z.output<(typeof EVENT_SCHEMAS)[E]>;
  const issue = result.error.issues[0];
  const field = issue.path.length > 0 ? issue.path.join('.') : '(payload)';
  throw new ProtocolError('invalid_message', `${event}: field ${field}: ${issue.message}`);
}

/** Wraps an error into a failed acknowledgement body. */
export function failure(error: ErrorBody): { ok: false; error: ErrorBody } {
  return { ok: false, error };
}
