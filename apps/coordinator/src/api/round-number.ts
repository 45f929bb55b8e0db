import { BadRequestException } from '@nestjs/common';
import { quoteInput } from './name-param';

/**
 * Parses a round number from a URL segment.
 * @throws BadRequestException unless the segment is a positive decimal integer.
 */
export function parseRoundNumber(segment: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(segment)) {
    throw new BadRequestException(`round must be a positive integer, got ${quoteInput(segment)}`);
  }
  return Number(segment);
}
