import pino from 'pino';

/**
 * Logger of the agent: JSON lines on stderr, so that stdout carries only a
 * command's result (for example `scan --json`). Level from COVNET_LOG_LEVEL.
 */
export const log = pino(
  { name: 'site-agent', level: process.env.COVNET_LOG_LEVEL ?? 'info' },
  pino.destination(2),
);
