import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';

/** Root of the repository, from which the apps are started. */
export const REPO_ROOT = join(__dirname, '..', '..', '..');

export interface ManagedProcess {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  logFile: string;
}

/**
 * Starts one of the project's TypeScript entry points in its own Node
 * process, with stdout and stderr appended to `logFile`.
 */
export function startProcess(
  name: string,
  entry: string,
  args: string[],
  logFile: string,
  env: NodeJS.ProcessEnv = {},
  onStdoutLine?: (line: string) => void,
): ManagedProcess {
  // Node itself runs the entry with tsx as a loader, rather than the tsx
  // wrapper binary, so that the process the demo signals is the one that works.
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, entry), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, COVNET_LOG_LEVEL: process.env.COVNET_CHILD_LOG_LEVEL ?? 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = createWriteStream(logFile, { flags: 'a' });
  let pending = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    log.write(chunk);
    if (!onStdoutLine) return;
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) onStdoutLine(line);
  });
  child.stderr!.on('data', (chunk: Buffer) => log.write(chunk));
  const exited = new Promise<number | null>((resolve) => {
    child.on('error', (error) => {
      log.write(`failed to start: ${error.message}\n`);
      resolve(null);
    });
    child.on('exit', (code, signal) => {
      if (signal) log.write(`${name} ended by signal ${signal}\n`);
      log.end();
      // A process ended by a signal reports the shell's convention, 128 + signal number.
      resolve(code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : null));
    });
  });
  return { name, child, exited, logFile };
}

/** Runs an entry point to completion and returns its stdout. @throws Error with the exit code and log file. */
export async function runToCompletion(name: string, entry: string, args: string[], logFile: string): Promise<string> {
  let stdout = '';
  const process = startProcess(name, entry, args, logFile, {}, (line) => (stdout += `${line}\n`));
  const code = await process.exited;
  if (code !== 0) throw new Error(`${name} exited with code ${code}; see ${logFile}`);
  return stdout;
}
