import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { CtSliceHeader } from '../dicom/ct-header';
import type { DicomRejectCode } from '../dicom/errors';

/** Result of scanning one file: per-frame headers with HU statistics, or the reason it was skipped. */
export type ScannedFile =
  | { frames: { header: CtSliceHeader; min: number; max: number; sum: number; count: number }[] }
  | { skip: { code: DicomRejectCode | 'io-error'; reason: string } };

interface IndexEntry {
  size: number;
  mtimeMs: number;
  scanned: ScannedFile;
}

/**
 * Version of the scan index format and of what a scan extracts from a file. Raise it when the
 * parser or the header fields change, so that indexes written before are ignored.
 */
export const SCAN_INDEX_VERSION = 2;

/**
 * Results of earlier scans, per file path, valid while the file's size and modification time
 * are unchanged, so that a second scan of an unchanged archive reads no file. Entries of files
 * not seen by the latest scan are dropped on save.
 */
export class ScanIndex {
  private readonly seen = new Set<string>();

  private constructor(
    readonly path: string | undefined,
    private readonly entries: Map<string, IndexEntry>,
  ) {}

  /** Returns an empty index kept in memory only. */
  static inMemory(): ScanIndex {
    return new ScanIndex(undefined, new Map());
  }

  /**
   * Loads an index file; a missing, unreadable or older-version file gives an empty index,
   * because the index only saves time and a scan rebuilds it.
   */
  static async load(path: string): Promise<ScanIndex> {
    try {
      const stored = JSON.parse(await readFile(path, 'utf8')) as { version?: number; files?: Record<string, IndexEntry> };
      if (stored.version === SCAN_INDEX_VERSION && stored.files !== undefined) return new ScanIndex(path, new Map(Object.entries(stored.files)));
    } catch {
      // Falls through to an empty index.
    }
    return new ScanIndex(path, new Map());
  }

  /** Returns the stored result for a file when its size and mtime match, and marks the file as seen. */
  get(path: string, size: number, mtimeMs: number): ScannedFile | undefined {
    this.seen.add(path);
    const entry = this.entries.get(path);
    return entry !== undefined && entry.size === size && entry.mtimeMs === mtimeMs ? entry.scanned : undefined;
  }

  set(path: string, size: number, mtimeMs: number, scanned: ScannedFile): void {
    this.seen.add(path);
    this.entries.set(path, { size, mtimeMs, scanned });
  }

  /** Number of files with a stored result. */
  get size(): number {
    return this.entries.size;
  }

  /** Writes the entries of the files seen since loading, atomically (temporary file, then rename). */
  async save(): Promise<void> {
    if (this.path === undefined) return;
    const files: Record<string, IndexEntry> = {};
    for (const path of this.seen) {
      const entry = this.entries.get(path);
      if (entry !== undefined) files[path] = entry;
    }
    await mkdir(dirname(this.path), { recursive: true });
    const temporary = `${this.path}.${process.pid}.tmp`;
    try {
      await writeFile(temporary, JSON.stringify({ version: SCAN_INDEX_VERSION, files }));
      await rename(temporary, this.path);
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    }
  }
}
