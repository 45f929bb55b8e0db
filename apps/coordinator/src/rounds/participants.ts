import { createHash } from 'node:crypto';

/**
 * Chooses the sites that train in a round: ceil(fraction x ready sites), at
 * least `minSites` and at most all of them. The choice is a pseudo-random
 * order by SHA-256 of experiment, round and site name, so it differs from
 * round to round but is the same after a restart. Returns names in name order.
 */
export function sampleParticipants(
  ready: readonly string[],
  options: { experiment: string; round: number; fraction: number; minSites: number },
): string[] {
  const count = Math.min(ready.length, Math.max(options.minSites, Math.ceil(options.fraction * ready.length)));
  if (count === ready.length) return [...ready].sort();
  const key = (site: string) => createHash('sha256').update(`${options.experiment}\u0000${options.round}\u0000${site}`).digest('hex');
  return [...ready]
    .sort((a, b) => key(a).localeCompare(key(b)))
    .slice(0, count)
    .sort();
}
