import { randomUUID } from 'node:crypto';
import { ChunkAssembler, ProtocolError, type UpdateBegin } from '@covnet/protocol';

export interface Upload {
  id: string;
  site: string;
  begin: UpdateBegin;
  assembler: ChunkAssembler;
}

/**
 * Update uploads in progress, at most one per site: a new `update:begin`
 * from a site drops its unfinished upload, so a site that restarts cannot
 * pile up buffers.
 */
export class Uploads {
  private readonly byId = new Map<string, Upload>();
  private readonly idBySite = new Map<string, string>();

  /** @throws ProtocolError `payload_too_large` or `invalid_message` from the assembler. */
  start(site: string, begin: UpdateBegin, maxBytes: number): Upload {
    const assembler = new ChunkAssembler(begin.payload, maxBytes);
    this.dropSite(site);
    const upload: Upload = { id: randomUUID(), site, begin, assembler };
    this.byId.set(upload.id, upload);
    this.idBySite.set(site, upload.id);
    return upload;
  }

  /**
   * Returns the upload `id` of `site`.
   * @throws ProtocolError `unknown_upload` when there is none, including an id of another site.
   */
  get(site: string, id: string): Upload {
    const upload = this.byId.get(id);
    if (!upload || upload.site !== site) {
      throw new ProtocolError('unknown_upload', `upload ${id} of site ${site} does not exist; start again with update:begin`);
    }
    return upload;
  }

  /** Returns whether `site` has the unfinished upload `id` here. */
  has(site: string, id: string): boolean {
    return this.byId.get(id)?.site === site;
  }

  /** Removes and returns the upload, so that a second commit of it fails as unknown. */
  take(site: string, id: string): Upload {
    const upload = this.get(site, id);
    this.byId.delete(id);
    this.idBySite.delete(site);
    return upload;
  }

  dropSite(site: string): void {
    const id = this.idBySite.get(site);
    if (id === undefined) return;
    this.byId.delete(id);
    this.idBySite.delete(site);
  }

  clear(): void {
    this.byId.clear();
    this.idBySite.clear();
  }
}
