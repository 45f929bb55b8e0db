import { readFile, rm } from 'node:fs/promises';
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
import { isLegacyAbsolute, resolveStoredPath, toStoredPath } from '../persistence/stored-paths';
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

    await this.checkStoredPaths();
    const stored = await this.versions.findOne({ where: { experiment: this.config.experiment, version: 0 } });
    const dataDir = this.config.dataDir;
    const sharedDir = this.files.sharedDir(dataDir);
    const ownDir = this.files.experimentDir(dataDir, this.config.experiment);
    const usesOwnDir = stored ? dirname(this.absolutePath(stored)) === ownDir : !this.sharedCheckpointDir;
    this.checkpointDir = usesOwnDir ? ownDir : sharedDir;
    if (!usesOwnDir) await this.claimSharedDir();

    const removed = await this.files.removeStaleTempFiles(this.checkpointDir);
    if (removed.length > 0) {
      this.log.warn({ directory: this.checkpointDir, files: removed }, `removed ${removed.length} temporary files that an interrupted checkpoint write left in ${this.checkpointDir}`);
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
   * `optimizerState`, the server optimizer's state after this step, is written
   * next to the checkpoint and recorded in the same row, so that the database
   * never contains a version without the state that produces the next one.
   */
  async saveNext(round: number, tensors: NamedTensor[], optimizerState: Buffer | null = null): Promise<ModelVersionEntity> {
    const payload = encodeWeights(tensors, 'float32', this.metaOfInitial);
    const version = this.current.version + 1;
    const row = await this.recordVersion(version, round, payload, optimizerState);
    this.previous = this.latest;
    this.latest = { version, payload, ref: describePayload(payload, this.config.chunkBytes) };
    if (optimizerState !== null) await this.releaseOptimizerState(version - 1);
    return row;
  }

  /**
   * Deletes the optimizer state of `version` once the next version's state is
   * recorded: a restart needs only the latest one, and each file is 16 bytes
   * per model parameter. The row is cleared first, so that a crash in between
   * leaves an unused file, never a row that names a missing one.
   */
  private async releaseOptimizerState(version: number): Promise<void> {
    const row = await this.versions.findOne({ where: { experiment: this.config.experiment, version } });
    if (!row || row.optimizerStatePath === null) return;
    const path = resolveStoredPath(this.config.dataDir, row.optimizerStatePath, `optimizer state of model version ${version} of experiment "${row.experiment}"`);
    row.optimizerStatePath = null;
    row.optimizerStateSha256 = null;
    await this.versions.save(row);
    await rm(path, { force: true });
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

  /**
   * Rewrites the absolute checkpoint paths of this experiment that point into
   * the data dir as relative ones, and checks that every stored path stays
   * inside the data dir. A moved data dir then starts, and a copied one reads its own files.
   * @throws StoredPathError naming the first path that leads outside the data dir.
   */
  private async checkStoredPaths(): Promise<void> {
    const dataDir = this.config.dataDir;
    for (const row of await this.versions.find({ where: { experiment: this.config.experiment }, order: { version: 'ASC' } })) {
      if (isLegacyAbsolute(dataDir, row.path)) {
        const relative = toStoredPath(dataDir, row.path);
        this.log.info({ modelVersion: row.version, from: row.path, to: relative }, `checkpoint path of model version ${row.version} stored relative to the data dir`);
        row.path = relative;
        await this.versions.save(row);
      }
      this.absolutePath(row);
      if (row.optimizerStatePath !== null) {
        resolveStoredPath(dataDir, row.optimizerStatePath, `optimizer state of model version ${row.version} of experiment "${row.experiment}"`);
      }
    }
  }

  /**
   * Makes sure that this experiment may write into the shared checkpoint folder.
   * @throws Error when another experiment's checkpoints are there.
   */
  private async claimSharedDir(): Promise<void> {
    const { dataDir, experiment } = this.config;
    const sharedDir = this.files.sharedDir(dataDir);
    let owner = await this.files.sharedDirOwner(dataDir);
    if (owner === null) {
      // Data dirs written before the owner file existed: their rows held
      // absolute paths. Experiments with other data dirs may share the database
      // (PostgreSQL), so only checkpoints inside this data dir count.
      const rows = await this.versions.find({ where: { experiment: Not(experiment) } });
      owner = rows.find((row) => isLegacyAbsolute(dataDir, row.path) && dirname(row.path) === sharedDir)?.experiment ?? null;
    }
    if (owner !== null && owner !== experiment) {
      throw new Error(
        `data dir ${dataDir} already contains checkpoints of experiment "${owner}"; use another --data-dir for experiment "${experiment}", or run both from one consortium file`,
      );
    }
    if (owner === null) await this.files.claimSharedDir(dataDir, experiment);
  }

  /** Returns the checkpoint file of `row`. @throws StoredPathError when its stored path leads outside the data dir. */
  private absolutePath(row: ModelVersionEntity): string {
    return resolveStoredPath(this.config.dataDir, row.path, `checkpoint of model version ${row.version} of experiment "${row.experiment}"`);
  }

  /**
   * Returns the server optimizer's state recorded with the current version,
   * or null when none is recorded (version 0, or a version written before the state was stored).
   * @throws Error when the state file is missing, outside the data dir or differs from its recorded SHA-256.
   */
  async currentOptimizerState(): Promise<{ state: Buffer; path: string } | null> {
    const row = await this.versions.findOne({ where: { experiment: this.config.experiment, version: this.current.version } });
    if (!row || row.optimizerStatePath === null || row.optimizerStateSha256 === null) return null;
    const path = resolveStoredPath(this.config.dataDir, row.optimizerStatePath, `optimizer state of model version ${row.version} of experiment "${row.experiment}"`);
    const state = await this.files.read(path);
    const actual = sha256Hex(state);
    if (actual !== row.optimizerStateSha256) {
      throw new Error(`optimizer state ${path} of model version ${row.version} has SHA-256 ${actual}, the database records ${row.optimizerStateSha256}`);
    }
    return { state, path };
  }

  private async recordVersion(version: number, round: number, payload: Buffer, optimizerState: Buffer | null = null): Promise<ModelVersionEntity> {
    if (this.checkpointDir === null) throw new Error('ModelStore.init() has not run');
    const path = this.files.pathIn(this.checkpointDir, version);
    await this.files.writeAtomic(path, payload);
    let statePath: string | null = null;
    if (optimizerState !== null) {
      statePath = this.files.optimizerStatePathIn(this.checkpointDir, version);
      await this.files.writeAtomic(statePath, optimizerState);
    }
    const row = this.versions.create({
      optimizerStatePath: statePath === null ? null : toStoredPath(this.config.dataDir, statePath),
      optimizerStateSha256: optimizerState === null ? null : sha256Hex(optimizerState),
      experiment: this.config.experiment,
      version,
      round,
      path: toStoredPath(this.config.dataDir, path),
      sha256: sha256Hex(payload),
      byteLength: payload.byteLength,
      createdAt: this.clock.nowIso(),
    });
    const saved = await this.versions.save(row);
    this.events.changed('models');
    return saved;
  }

  private async loadVersion(row: ModelVersionEntity): Promise<LoadedModel> {
    const path = this.absolutePath(row);
    const payload = await this.files.read(path);
    const actual = sha256Hex(payload);
    if (actual !== row.sha256) {
      throw new Error(`checkpoint ${path} of model version ${row.version} has SHA-256 ${actual}, the database records ${row.sha256}`);
    }
    return { version: row.version, payload, ref: describePayload(payload, this.config.chunkBytes) };
  }
}
