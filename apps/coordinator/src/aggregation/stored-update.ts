import { closeSync, openSync, readSync } from 'node:fs';
import type { NativeFoldSource } from '@covnet/native-kernels';
import { float16Table, type DecodedWeights } from '@covnet/protocol';
import { LayoutRanges, layoutMismatch, type ModelLayout, type TiledUpdate } from './fedavg';
import { TILE_VALUES } from './simd-kernel';

/**
 * An accepted update read back tile by tile from its stored weight file, so
 * that an update waiting to be folded takes no memory beyond its file
 * descriptor. The native fold reads the file itself with the offsets of
 * `nativeSource`. The wasm fold reads values straight into its tile in wasm
 * memory with `readTile`. The file is opened at the first `readTile` or
 * `nativeSource` and closed by `release`.
 */
export class StoredUpdate implements TiledUpdate {
  private readonly ranges: LayoutRanges;
  private readonly byteOffsets: Float64Array;
  private readonly bytesPerValue: number;
  private descriptor: number | null = null;
  private halfTile: Uint16Array | null = null;

  /**
   * @param decoded the file's decoded content; only its dtype and data offsets
   * are kept, so the caller may drop its tensors.
   * @throws Error when the weight is not a positive number or the tensors do not fit `layout`.
   */
  constructor(
    readonly path: string,
    readonly weight: number,
    layout: ModelLayout,
    decoded: Pick<DecodedWeights, 'dtype' | 'tensors' | 'dataOffsets'>,
  ) {
    if (!(weight > 0) || !Number.isFinite(weight)) throw new Error(`stored update ${path} has weight ${weight}, not a positive number`);
    const mismatch = layoutMismatch(layout, decoded.tensors);
    if (mismatch) throw new Error(`stored update ${path} does not fit the global model: ${mismatch}`);
    this.ranges = new LayoutRanges(layout);
    const offsetByName = new Map(decoded.tensors.map((tensor, i) => [tensor.name, decoded.dataOffsets[i]]));
    this.byteOffsets = Float64Array.from(layout, (entry) => offsetByName.get(entry.name)!);
    this.bytesPerValue = decoded.dtype === 'float32' ? 4 : 2;
  }

  /** @throws Error when the file cannot be read or ends before the values. */
  readTile(start: number, count: number, target: Float32Array): void {
    const descriptor = this.open();
    this.ranges.forEachPiece(start, count, (k, from, to, at) => {
      const position = this.byteOffsets[k] + from * this.bytesPerValue;
      if (this.bytesPerValue === 4) {
        this.readExactly(descriptor, new Uint8Array(target.buffer, target.byteOffset + at * 4, (to - from) * 4), position);
        return;
      }
      const half = (this.halfTile ??= new Uint16Array(TILE_VALUES));
      const n = to - from;
      this.readExactly(descriptor, new Uint8Array(half.buffer, 0, n * 2), position);
      const table = float16Table();
      for (let i = 0; i < n; i++) target[at + i] = table[half[i]];
    });
  }

  /** Opens the file and returns where the native fold reads the values. @throws Error when the file cannot be opened. */
  nativeSource(): NativeFoldSource {
    return { weight: this.weight, descriptor: this.open(), path: this.path, bytesPerValue: this.bytesPerValue === 4 ? 4 : 2, byteOffsets: this.byteOffsets };
  }

  release(): void {
    if (this.descriptor === null) return;
    closeSync(this.descriptor);
    this.descriptor = null;
  }

  private open(): number {
    return (this.descriptor ??= openSync(this.path, 'r'));
  }

  private readExactly(descriptor: number, into: Uint8Array, position: number): void {
    let done = 0;
    while (done < into.byteLength) {
      const read = readSync(descriptor, into, done, into.byteLength - done, position + done);
      if (read === 0) throw new Error(`stored update ${this.path} is truncated: it ends before byte ${position + done}, where values of the global model are expected`);
      done += read;
    }
  }
}
