import { execFile } from 'node:child_process';
import { log } from '../log';

/**
 * Returns the name of the first NVIDIA GPU as `nvidia-smi` reports it, or
 * "unknown GPU" when nvidia-smi is missing or fails. The name is only shown
 * to the consortium, so a failure is logged and does not stop the agent.
 */
export function gpuName(): Promise<string> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { timeout: 5000 }, (error, stdout) => {
      const name = stdout?.split('\n')[0]?.trim();
      if (error || !name) {
        log.warn({ error: error?.message }, 'nvidia-smi did not report a GPU name; the coordinator sees "unknown GPU"');
        resolve('unknown GPU');
        return;
      }
      resolve(name.slice(0, 128));
    });
  });
}
