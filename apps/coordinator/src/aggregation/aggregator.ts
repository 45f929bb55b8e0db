import type { NamedTensor } from '@covnet/protocol';
import { FedAvgAccumulator, type ModelLayout } from './fedavg';
import { RobustAggregator } from './robust';

/**
 * Rule that turns a round's updates into one model. `fedavg` is the mean
 * weighted by each site's training exams, folded in as updates arrive.
 * `median` and `trimmed-mean` are unweighted coordinate-wise estimates over
 * all updates, which are kept until the round closes.
 */
export type AggregationRule = { name: 'fedavg' } | { name: 'median' } | { name: 'trimmed-mean'; trimFraction: number };

/** Combines the accepted updates of one round; `reset` starts the next round. */
export interface Aggregator {
  readonly updates: number;
  /** Sum of the update weights (training exams). */
  readonly weight: number;
  add(update: NamedTensor[], weight: number): void;
  result(): NamedTensor[];
  reset(): void;
}

/** Returns the aggregator of `rule` for models of `layout`. */
export function createAggregator(layout: ModelLayout, rule: AggregationRule): Aggregator {
  switch (rule.name) {
    case 'fedavg':
      return new FedAvgAccumulator(layout);
    case 'median':
    case 'trimmed-mean':
      return new RobustAggregator(layout, rule);
  }
}
