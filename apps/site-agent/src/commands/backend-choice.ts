import { initBackend, type BackendChoice } from '@covnet/model';
import { log } from '../log';

/**
 * Chooses the tfjs backend once (see initBackend) and logs the choice with its reason.
 * Each set-up problem found on the way, such as tfjs-node-gpu computing on the CPU, is
 * logged as its own warning, so the agent's log shows it at warn level.
 */
export async function chooseAndLogBackend(): Promise<BackendChoice> {
  const choice = await initBackend();
  log.info({ backend: choice.backend, rung: choice.rung, reason: choice.reason, attempts: choice.attempts }, 'backend chosen');
  for (const warning of choice.warnings) {
    log.warn({ backend: choice.backend, rung: choice.rung }, warning);
  }
  return choice;
}
