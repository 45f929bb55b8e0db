import { readFile, rename, writeFile, open } from 'node:fs/promises';
import { decodeWeights, sha256Hex } from '@covnet/protocol';
import { createCovnet, type Covnet } from '@covnet/model';
import type { InputSpec } from '../archive/site-archive';

/**
 * Loads a checkpoint in the weight format and builds the COVNet it describes.
 * @throws Error naming the file when its metadata lacks the input geometry.
 */
export async function loadCheckpoint(path: string): Promise<{ covnet: Covnet; spec: InputSpec; sha256: string }> {
  const payload = await readFile(path);
  const decoded = decodeWeights(payload);
  const { backbone, inputSize, maxSlices } = decoded.meta;
  if (typeof backbone !== 'string' || typeof inputSize !== 'number' || typeof maxSlices !== 'number') {
    throw new Error(`checkpoint ${path} lacks backbone, inputSize or maxSlices in its metadata`);
  }
  const covnet = createCovnet({ backbone: backbone as 'small', inputSize });
  covnet.setNamedWeights(decoded.tensors);
  return { covnet, spec: { backbone, inputSize, maxSlices }, sha256: sha256Hex(payload) };
}

/** Writes a file so that readers see either the old or the whole new content, never a partial one. */
export async function writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, data);
  const handle = await open(temporary, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
}
