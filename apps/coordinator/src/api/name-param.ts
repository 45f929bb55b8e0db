import { BadRequestException } from '@nestjs/common';
import { SITE_NAME_PATTERN } from '../sites/site-tokens';

/**
 * Pattern of site and experiment names in URLs. It admits no slash, no
 * percent sign and no control character, and a name cannot start with a dot,
 * so a name is never a path outside the folder it is joined to.
 */
export const NAME_PATTERN = SITE_NAME_PATTERN;

/**
 * Returns `value` if it is a valid site or experiment name.
 * @param field names the URL segment or query parameter in the error message.
 * @throws BadRequestException for a missing, repeated or malformed name.
 */
export function parseNameParam(field: string, value: unknown): string {
  if (typeof value !== 'string') {
    throw new BadRequestException(`${field} must be given once as a string, got ${Array.isArray(value) ? 'several values' : typeof value}`);
  }
  if (!NAME_PATTERN.test(value)) {
    throw new BadRequestException(`${field} ${quoteInput(value)} is invalid: expected 1-64 letters, digits, dot, dash or underscore, starting with a letter or digit`);
  }
  return value;
}

/** Quotes client input for an error message, cut to 64 characters so that an oversized value is not echoed whole. */
export function quoteInput(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}...` : value);
}
