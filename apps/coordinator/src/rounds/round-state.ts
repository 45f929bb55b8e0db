/** States of a round, in the order a round passes through them. */
export const ROUND_STATES = ['waiting_for_quorum', 'training', 'aggregating', 'evaluating', 'done'] as const;
export type RoundState = (typeof ROUND_STATES)[number];

/**
 * Returns the state that follows `state`.
 * @throws Error for `done`, which has no successor.
 */
export function nextRoundState(state: RoundState): RoundState {
  switch (state) {
    case 'waiting_for_quorum':
      return 'training';
    case 'training':
      return 'aggregating';
    case 'aggregating':
      return 'evaluating';
    case 'evaluating':
      return 'done';
    case 'done':
      throw new Error('a done round has no next state');
    default:
      return assertNever(state);
  }
}

/** Compile-time exhaustiveness check for switches over closed unions. */
export function assertNever(value: never): never {
  throw new Error(`unexpected value ${String(value)}`);
}
