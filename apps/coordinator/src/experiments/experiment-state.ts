/**
 * States of an experiment. `created` has not started; `paused` finishes its
 * open round and starts no other until resumed; `stopped` ends it for good;
 * `done` ran all its rounds.
 */
export const EXPERIMENT_STATES = ['created', 'running', 'paused', 'stopped', 'done'] as const;
export type ExperimentState = (typeof EXPERIMENT_STATES)[number];

/** Actions of the REST API on an experiment. */
export type ExperimentAction = 'start' | 'pause' | 'stop';

/**
 * Returns the state `action` leads to from `state`, or null when the action
 * does not apply (e.g. starting a stopped experiment).
 */
export function applyAction(state: ExperimentState, action: ExperimentAction): ExperimentState | null {
  switch (action) {
    case 'start':
      return state === 'created' || state === 'paused' ? 'running' : null;
    case 'pause':
      return state === 'running' ? 'paused' : null;
    case 'stop':
      return state === 'created' || state === 'running' || state === 'paused' ? 'stopped' : null;
  }
}
