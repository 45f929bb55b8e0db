import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/**
 * Computes the input gradient of a strided convolution (stride s > 1 along an axis, filter
 * wider than one pixel) as s x s stride-1 convolutions, one per phase of the input pixels,
 * instead of one convolution over dy spread out with s - 1 zeros between pixels. Input
 * row p = ih + top of phase r = p mod s only receives the filter rows r, r + s, r + 2s, ...,
 * so each phase is a small convolution of dy with those rows. Together the phases cost as
 * many multiply-adds as the forward convolution, and the spread-out dy costs s^2 times as
 * many. For the ResNet-50 stem (7x7, stride 2, 4 slices of 224 pixels) one run took 200 ms
 * against 659 ms spread out and 53 ms forward (one core of a shared two-core machine).
 *
 * The phases are interleaved into the output in JS, because wasm's Concat and Transpose
 * copy small rows one at a time.
 * @param filter the forward filter [kh, kw, in, out], read out of the wasm heap.
 * @returns dx [n, inHeight, inWidth, in] in a buffer of the wasm backend.
 */
export function phaseSplitInputGradient(
  dy: tf.Tensor4D,
  filter: Float32Array,
  filterShape: [number, number, number, number],
  info: tf.backend_util.Conv2DInfo,
  backend: BackendWasm,
): tf.TensorInfo {
  const [filterHeight, filterWidth, inChannels, outChannels] = filterShape;
  const { strideHeight, strideWidth, inHeight, inWidth, batchSize } = info;
  const { top, left } = info.padInfo;
  const [, outHeight, outWidth] = dy.shape;

  // Phase (rh, rw) is at index rh * strideWidth + rw; undefined when no filter tap falls in it.
  const phases: (tf.Tensor4D | undefined)[] = [];
  try {
    for (let rh = 0; rh < strideHeight; rh++) {
      for (let rw = 0; rw < strideWidth; rw++) {
        const tapsHigh = Math.ceil((filterHeight - rh) / strideHeight);
        const tapsWide = Math.ceil((filterWidth - rw) / strideWidth);
        if (tapsHigh <= 0 || tapsWide <= 0) {
          phases.push(undefined);
          continue;
        }
        const phaseFilter = rotatedPhaseFilter(filter, filterShape, rh, rw, strideHeight, strideWidth, tapsHigh, tapsWide);
        phases.push(
          tf.tidy(() => {
            const kernel = tf.tensor4d(phaseFilter, [tapsHigh, tapsWide, outChannels, inChannels]);
            // A full correlation: every output of the phase receives every tap that touched it.
            const framed = tf.pad(dy, [
              [0, 0],
              [tapsHigh - 1, tapsHigh - 1],
              [tapsWide - 1, tapsWide - 1],
              [0, 0],
            ]);
            return tf.conv2d(framed, kernel, 1, 'valid');
          }),
        );
      }
    }

    // makeOutput may grow the wasm memory, which detaches earlier views of the heap, so
    // every view is taken after it.
    const out = backend.makeOutput([batchSize, inHeight, inWidth, inChannels], 'float32');
    const target = backend.typedArrayFromHeap(out) as Float32Array;
    const sources = phases.map((phase) => (phase === undefined ? undefined : (backend.typedArrayFromHeap(phase) as Float32Array)));
    for (let n = 0; n < batchSize; n++) {
      for (let ih = 0; ih < inHeight; ih++) {
        const rh = (ih + top) % strideHeight;
        const q = (ih + top - rh) / strideHeight;
        for (let iw = 0; iw < inWidth; iw++) {
          const rw = (iw + left) % strideWidth;
          const qw = (iw + left - rw) / strideWidth;
          const index = rh * strideWidth + rw;
          const phase = phases[index];
          const source = sources[index];
          const offset = ((n * inHeight + ih) * inWidth + iw) * inChannels;
          // Rows and columns past a phase's output received no filter tap: their gradient is 0.
          if (phase === undefined || source === undefined || q >= phase.shape[1] || qw >= phase.shape[2]) {
            target.fill(0, offset, offset + inChannels);
            continue;
          }
          const from = ((n * phase.shape[1] + q) * phase.shape[2] + qw) * inChannels;
          target.set(source.subarray(from, from + inChannels), offset);
        }
      }
    }
    return out;
  } finally {
    tf.dispose(phases.filter((phase): phase is tf.Tensor4D => phase !== undefined));
  }
}

/**
 * Takes the filter taps of one phase, rows rh, rh + sh, ... and columns rw, rw + sw, ...,
 * rotated by 180 degrees and with the channel axes swapped: [tapsHigh, tapsWide, out, in].
 */
function rotatedPhaseFilter(
  filter: Float32Array,
  [, filterWidth, inChannels, outChannels]: [number, number, number, number],
  rh: number,
  rw: number,
  strideHeight: number,
  strideWidth: number,
  tapsHigh: number,
  tapsWide: number,
): Float32Array {
  const phaseFilter = new Float32Array(tapsHigh * tapsWide * outChannels * inChannels);
  for (let a = 0; a < tapsHigh; a++) {
    const row = rh + strideHeight * (tapsHigh - 1 - a);
    for (let b = 0; b < tapsWide; b++) {
      const column = rw + strideWidth * (tapsWide - 1 - b);
      const source = (row * filterWidth + column) * inChannels * outChannels;
      const target = (a * tapsWide + b) * outChannels * inChannels;
      for (let i = 0; i < inChannels; i++) {
        for (let o = 0; o < outChannels; o++) {
          phaseFilter[target + o * inChannels + i] = filter[source + i * outChannels + o];
        }
      }
    }
  }
  return phaseFilter;
}
