import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Not, type Repository } from 'typeorm';
import type { Logger } from 'pino';
import {
  ProtocolError,
  decodeWeights,
  describePayload,
  encodeWeights,
  sha256Hex,
  sliceChunk,
  type NamedTensor,
  type PayloadRef,
} from '@covnet/protocol';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/config';
import { ROOT_LOGGER } from '../logging/logger';
import { ModelVersionEntity } from '../persistence/entities';
import { firstNonFinite, type ModelLayout } from '../aggregation/fedavg';
import { CoordinatorEvents } from '../events/coordinator-events';
import { Clock } from '../clock';
import { CheckpointFiles } from './checkpoint-files';

/** A global model version held in memory, ready to be served in chunks. */
export interface LoadedModel {
  version: number;
  payload: Buffer;
  ref: PayloadRef;
}

// An update may use another wire precision or carry more metadata than the
// global model, so the limit leaves room above the global model's size while
// still stopping a peer from making the coordinator allocate without bound.
const UPDATE_SIZE_FACTOR = 4;
const UPDATE_SIZE_SLACK_BYTES = 64 * 1024;

/**
 * Global model versions of one experiment: version 0 from its initial model,
 * later ones written by aggregation. The current version stays in memory;
 * older versions are read back from their checkpoints when a site requests one.
 */
/** An experiment's initial model that cannot be read, decoded or used: the file's fault, not the coordinator's. */
export class InitialModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InitialModelError';
  }
}

@Injectable()
export class ModelStore {
  private layoutOfInitial: ModelLayout = [];
  private metaOfInitial: Record<string, string | number | boolean | null> = {};
  private latest: LoadedModel | null = null;
  // One older version is kept so that sites still pulling it after a round
  // closes do not cause a file read per chunk.
  private previous: LoadedModel | null = null;
  private checkpointDir: string | null = null;
  private readonly log: Logger;
  /**
   * Whether a new experiment writes its checkpoints straight into
   * `<data dir>/checkpoints`, as when the coordinator runs one experiment.
   * Otherwise each experiment gets `<data dir>/checkpoints/<experiment>`.
   * An experiment with stored versions keeps the folder of its version 0.
   */
  sharedCheckpointDir = true;

  constructor(
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    @Inject(ROOT_LOGGER) rootLogger: Logger,
    @InjectRepository(ModelVersionEntity) private readonly versions: Repository<ModelVersionEntity>,
    @Inject(CheckpointFiles) private readonly files: CheckpointFiles,
    @Inject(Clock) private readonly clock: Clock,
    @Inject(CoordinatorEvents) private readonly events: CoordinatorEvents,
  ) {
    this.log = rootLogger.child({ context: 'models', experiment: config.experiment });
  }

  /**
   * Reads the initial model, records it as version 0 if this experiment has no
   * versions yet, and loads the latest version.
   * @throws Error when the initial model cannot be decoded or contains a non-finite
   * value, when the data dir contains another experiment's checkpoints, or when
   * the stored version 0 differs from the --initial-model file.
   */
  async init(): Promise<void> {
    const path = this.config.initialModelFile;
    let initial: Buffer;
    try {
      initial = await readFile(path);
    } catch (error) {
      throw new InitialModelError(`initial model ${path} cannot be read: ${(error as Error).message}`);
    }
    let tensors: NamedTensor[];
    try {
      const decoded = decodeWeights(initial);
      tensors = decoded.tensors;
      this.metaOfInitial = decoded.meta;
    } catch (error) {
      throw new InitialModelError(`initial model ${path} is not a valid weight file: ${(error as Error).message}`);
    }
    const nonFinite = firstNonFinite(tensors);
    if (nonFinite) throw new InitialModelError(`initial model ${path}: tensor ${nonFinite} contains NaN or an infinite value`);
    this.layoutOfInitial = tensors.map((t) => ({ name: t.name, shape: [...t.shape] }));
    for (const [key, expected] of [['backbone', this.config.backbone], ['inputSize', this.config.inputSize]] as const) {
      if (expected !== null && this.metaOfInitial[key] !== expected) {
        throw new InitialModelError(
          `initial model ${path} has ${key} ${JSON.stringify(this.metaOfInitial[key])}, but experiment "${this.config.experiment}" expects ${expected}; write a matching one with site-agent init-model`,
        );
      }
    }

    const stored = await this.versions.findOne({ where: { experiment: this.config.experiment, version: 0 } });
    const sharedDir = this.files.sharedDir(this.config.dataDir);
    const ownDir = this.files.experimentDir(this.config.dataDir, this.config.experiment);
    const usesOwnDir = stored ? dirname(stored.path) === ownDir : !this.sharedCheckpointDir;
    this.checkpointDir = usesOwnDir ? ownDir : sharedDir;
    if (!usesOwnDir) {
      // File names in the shared folder carry only the version, so two
      // experiments there would overwrite each other's files.
      // Experiments with other data dirs may share the database (PostgreSQL), so
      // only checkpoints inside this data dir count.
      const foreign = (await this.versions.find({ where: { experiment: Not(this.config.experiment) } })).find((row) => dirname(row.path) === sharedDir);
      if (foreign) {
        throw new Error(
          `data dir ${this.config.dataDir} already contains checkpoints of experiment "${foreign.experiment}"; use another --data-dir for experiment "${this.config.experiment}", or run both from one consortium file`,
        );
      }
    }

    const initialSha = sha256Hex(initial);
    if (stored && stored.sha256 !== initialSha) {
      throw new Error(
        `initial model ${path} has SHA-256 ${initialSha}, but version 0 of experiment "${this.config.experiment}" has ${stored.sha256}; use another --experiment or --data-dir`,
      );
    }
    if (!stored) await this.recordVersion(0, 0, initial);

    const latestRow = await this.versions.findOne({ where: { experiment: this.config.experiment }, order: { version: 'DESC' } });
    this.latest = await this.loadVersion(latestRow!);
    this.log.info(
      { modelVersion: this.latest.version, tensors: this.layoutOfInitial.length, bytes: initial.byteLength },
      `global model is version ${this.latest.version}`,
    );
  }

  /** Decoded tensors of the current global model. */
  currentTensors(): NamedTensor[] {
    return decodeWeights(this.current.payload).tensors;
  }

  /** Names and shapes every update must match: those of the initial model. */
  get layout(): ModelLayout {
    return this.layoutOfInitial;
  }

  get current(): LoadedModel {
    if (!this.latest) throw new Error('ModelStore.init() has not run');
    return this.latest;
  }

  /** Largest update payload accepted, in bytes. */
  get maxUpdateBytes(): number {
    return this.current.ref.byteLength * UPDATE_SIZE_FACTOR + UPDATE_SIZE_SLACK_BYTES;
  }

  /**
   * Returns chunk `index` of model `version`.
   * @throws ProtocolError `unknown_model_version`, or `invalid_message` for an index out of range.
   */
  async chunk(version: number, index: number): Promise<Uint8Array> {
    const model = await this.get(version);
    return sliceChunk(model.payload, model.ref, index);
  }

  /**
   * Encodes aggregated tensors as the next version, writes its checkpoint and
   * records it. The initial model's metadata (e.g. backbone name) is carried over.
   */
  async saveNext(round: number, tensors: NamedTensor[]): Promise<ModelVersionEntity> {
    const payload = encodeWeights(tensors, 'float32', this.metaOfInitial);
    const version = this.current.version + 1;
    const row = await this.recordVersion(version, round, payload);
    this.previous = this.latest;
    this.latest = { version, payload, ref: describePayload(payload, this.config.chunkBytes) };
    return row;
  }

  /** Returns the version that round `round` wrote, or null when it has not been aggregated. */
  async versionOfRound(round: number): Promise<ModelVersionEntity | null> {
    return this.versions.findOne({ where: { experiment: this.config.experiment, round } });
  }

  async list(): Promise<ModelVersionEntity[]> {
    return this.versions.find({ where: { experiment: this.config.experiment }, order: { version: 'ASC' } });
  }

  /** Returns the checkpoint bytes of `version`. @throws ProtocolError `unknown_model_version`. */
  async checkpoint(version: number): Promise<Buffer> {
    return (await this.get(version)).payload;
  }

  private async get(version: number): Promise<LoadedModel> {
    if (this.latest?.version === version) return this.latest;
    if (this.previous?.version === version) return this.previous;
    const row = await this.versions.findOne({ where: { experiment: this.config.experiment, version } });
    if (!row) {
      throw new ProtocolError('unknown_model_version', `model version ${version} does not exist; the current version is ${this.current.version}`);
    }
    this.previous = await this.loadVersion(row);
    return this.previous;
  }

  private async recordVersion(version: number, round: number, payload: Buffer): Promise<ModelVersionEntity> {
    if (this.checkpointDir === null) throw new Error('ModelStore.init() has not run');
    const path = this.files.pathIn(this.checkpointDir, version);
    await this.files.writeAtomic(path, payload);
    const row = this.versions.create({
      experiment: this.config.experiment,
      version,
      round,
      path,
      sha256: sha256Hex(payload),
      byteLength: payload.byteLength,
      createdAt: this.clock.nowIso(),
    });
    const saved = await this.versions.save(row);
    this.events.changed('models');
    return saved;
  }

  private async loadVersion(row: ModelVersionEntity): Promise<LoadedModel> {
    const payload = await this.files.read(row.path);
    const actual = sha256Hex(payload);
    if (actual !== row.sha256) {
      throw new Error(`checkpoint ${row.path} of model version ${row.version} has SHA-256 ${actual}, the database records ${row.sha256}`);
    }
    return { version: row.version, payload, ref: describePayload(payload, this.config.chunkBytes) };
  }
}
