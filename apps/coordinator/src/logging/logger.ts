import pino, { type Logger } from 'pino';
import type { LoggerService } from '@nestjs/common';

/** Injection token of the root pino logger. */
export const ROOT_LOGGER = Symbol('ROOT_LOGGER');

/**
 * Creates the coordinator's pino logger. Lines are JSON on stderr, so stdout
 * carries only the one "listening" line that scripts parse.
 */
export function createRootLogger(level: string): Logger {
  return pino({ level, base: { service: 'coordinator' } }, pino.destination({ fd: 2, sync: true }));
}

/** Routes Nest's own framework messages into pino with their context. */
export class NestPinoLogger implements LoggerService {
  constructor(private readonly logger: Logger) {}

  log(message: unknown, context?: string): void {
    this.logger.info({ context: context ?? 'nest' }, String(message));
  }

  error(message: unknown, stack?: string, context?: string): void {
    this.logger.error({ context: context ?? 'nest', stack }, String(message));
  }

  warn(message: unknown, context?: string): void {
    this.logger.warn({ context: context ?? 'nest' }, String(message));
  }

  debug(message: unknown, context?: string): void {
    this.logger.debug({ context: context ?? 'nest' }, String(message));
  }

  verbose(message: unknown, context?: string): void {
    this.logger.trace({ context: context ?? 'nest' }, String(message));
  }
}
