import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { ProtocolError, type UpdateBegin } from '@covnet/protocol';
import type { UpdateFiles, UploadFile } from './update-files';

export interface Upload {
  id: string;
  site: string;
  begin: UpdateBegin;
  file: UploadFile;
}

/**
 * Update uploads in progress, at most one per site. An `update:begin` that
 * repeats the site's unfinished upload (same round, model version, exam
 * count and payload) resumes it from the next chunk not yet acknowledged.
 * Any other `update:begin` from the site drops the unfinished one, so a site
 * that restarts cannot pile up files.
 */
export class Uploads {
  private readonly byId = new Map<string, Upload>();
  private readonly idBySite = new Map<string, string>();

  constructor(
    private readonly files: UpdateFiles,
    private readonly log: Logger,
  ) {}

  /**
   * Returns the site's unfinished upload of the same update, or starts a new one.
   * @throws ProtocolError `payload_too_large` or `invalid_message` for an unusable payload description.
   */
  async start(site: string, begin: UpdateBegin, maxBytes: number): Promise<Upload> {
    const existing = this.byId.get(this.idBySite.get(site) ?? '');
    if (existing && !existing.file.failed && sameUpdate(existing.begin, begin)) return existing;
    this.dropSite(site);
    const id = randomUUID();
    const file = await this.files.startUpload(id, begin.payload, maxBytes);
    // A second begin from the same site may have started meanwhile; the later one wins.
    this.dropSite(site);
    const upload: Upload = { id, site, begin, file };
    this.byId.set(id, upload);
    this.idBySite.set(site, id);
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

  /** Drops the site's unfinished upload and deletes its file. */
  dropSite(site: string): void {
    const id = this.idBySite.get(site);
    if (id === undefined) return;
    const upload = this.byId.get(id)!;
    this.byId.delete(id);
    this.idBySite.delete(site);
    this.discard(upload);
  }

  /** Drops every unfinished upload and deletes their files. */
  clear(): void {
    for (const upload of this.byId.values()) this.discard(upload);
    this.byId.clear();
    this.idBySite.clear();
  }

  // A file left behind is removed at the next start (see UpdateFiles.removeUploads),
  // so a failed delete loses nothing and is only logged.
  private discard(upload: Upload): void {
    upload.file.discard().catch((error: Error) => {
      this.log.warn({ site: upload.site, uploadId: upload.id, err: error }, `deleting the unfinished upload ${upload.file.path} failed`);
    });
  }
}

function sameUpdate(a: UpdateBegin, b: UpdateBegin): boolean {
  return (
    a.experiment === b.experiment &&
    a.round === b.round &&
    a.modelVersion === b.modelVersion &&
    a.numExamples === b.numExamples &&
    a.trainLoss === b.trainLoss &&
    a.payload.sha256 === b.payload.sha256 &&
    a.payload.byteLength === b.payload.byteLength &&
    a.payload.chunkBytes === b.payload.chunkBytes
  );
}
