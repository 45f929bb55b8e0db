import { readFile } from 'node:fs/promises';
import { z } from 'zod';

const sitesFileSchema = z
  .object({
    sites: z
      .array(
        z
          .object({
            name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected 1-64 letters, digits, dot, dash or underscore'),
            tokenSha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected the lowercase hex SHA-256 of the token'),
          })
          .strict(),
      )
      .min(1, 'lists no site'),
  })
  .strict();

export type SiteCredential = z.infer<typeof sitesFileSchema>['sites'][number];

/**
 * Reads the sites file `{"sites":[{"name","tokenSha256"}]}`.
 * @throws Error naming the file and the first invalid field, or a repeated name or token.
 */
export async function readSitesFile(path: string): Promise<SiteCredential[]> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new Error(`sites file ${path} could not be read as JSON: ${(error as Error).message}`);
  }
  const parsed = sitesFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`sites file ${path}: field ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const names = new Set<string>();
  const hashes = new Set<string>();
  for (const site of parsed.data.sites) {
    if (names.has(site.name)) throw new Error(`sites file ${path}: site ${site.name} is listed twice`);
    // Two sites with one token could not be distinguished at connect.
    if (hashes.has(site.tokenSha256)) throw new Error(`sites file ${path}: site ${site.name} shares its token with another site`);
    names.add(site.name);
    hashes.add(site.tokenSha256);
  }
  return parsed.data.sites;
}
