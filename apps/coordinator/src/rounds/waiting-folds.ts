import type { NamedTensor } from '@covnet/protocol';
import type { FedAvgAccumulator } from '../aggregation/fedavg';
import type { StoredUpdate } from '../aggregation/stored-update';
import { Deferred } from './deferred';

/**
 * Accepted FedAvg updates of the open round that are stored and recorded but
 * not yet folded into the sum, in acceptance order. A waiting update keeps
 * only its file's path and data offsets, so any number of them may wait.
 * `flush` folds them all in one batched pass (see `FedAvgAccumulator.addBatch`),
 * which gives the same sum bit for bit as folding each on its own in that order.
 */
export class WaitingFolds {
  private waiting: { update: StoredUpdate; folded: Deferred<void> }[] = [];
  private failure: Error | null = null;

  constructor(private readonly accumulator: FedAvgAccumulator) {}

  get size(): number {
    return this.waiting.length;
  }

  /** Queues an update behind those already waiting; resolves once `flush` has folded it. */
  push(update: StoredUpdate): Promise<void> {
    const entry = { update, folded: new Deferred<void>() };
    this.waiting.push(entry);
    return entry.folded.promise;
  }

  /**
   * Folds every waiting update in acceptance order and returns how many it folded.
   * @throws Error when a stored file cannot be read. The sum then contains part of
   * the batch, so every later call throws the same error and the round cannot be
   * aggregated in this process. A restarted coordinator rebuilds the sum from the
   * stored updates.
   */
  flush(): number {
    if (this.failure) throw this.failure;
    const folded = this.size;
    if (folded > 0) this.foldWith((updates) => this.accumulator.addBatch(updates));
    return folded;
  }

  /**
   * Folds every waiting update and returns the round's weighted mean (see
   * `FedAvgAccumulator.resultAfter`); the accumulator must be reset before it is used again.
   * @throws Error as `flush` does, or when no update was added at all.
   */
  flushWithResult(): NamedTensor[] {
    let mean: NamedTensor[] = [];
    this.foldWith((updates) => (mean = this.accumulator.resultAfter(updates)));
    return mean;
  }

  private foldWith(fold: (updates: StoredUpdate[]) => void): void {
    if (this.failure) throw this.failure;
    const batch = this.waiting;
    this.waiting = [];
    try {
      fold(batch.map((entry) => entry.update));
    } catch (error) {
      if (batch.length === 0) throw error;
      this.failure = new Error(
        `folding ${batch.length} stored updates into the FedAvg sum failed, so the sum is incomplete: ${(error as Error).message}. Restart the coordinator to rebuild the round's sum from the stored updates`,
      );
      for (const entry of batch) entry.folded.reject(this.failure);
      throw this.failure;
    }
    for (const entry of batch) entry.folded.resolve();
  }

  /** Rejects every waiting update with `reason`, e.g. when the coordinator shuts down. */
  cancel(reason: Error): void {
    for (const entry of this.waiting) entry.folded.reject(reason);
    this.waiting = [];
  }
}
