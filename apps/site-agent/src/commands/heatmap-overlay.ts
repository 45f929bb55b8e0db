import { PNG } from 'pngjs';
import type { GradCamResult } from '@covnet/model';

/** Heat below this is not drawn, so the slice stays readable where the model paid no attention. */
const MIN_VISIBLE_HEAT = 0.2;
/** Opacity of the colour at heat 1. */
const MAX_OPACITY = 0.6;

/**
 * Maps heat in [0, 1] to a blue-cyan-yellow-red ramp, the usual Grad-CAM colours.
 * Returns [r, g, b] in 0..255.
 */
export function heatColour(heat: number): [number, number, number] {
  const h = Math.min(1, Math.max(0, heat));
  const ramp = (start: number, end: number): number => Math.min(1, Math.max(0, (h - start) / (end - start)));
  const red = ramp(0.35, 0.65);
  const green = h < 0.65 ? ramp(0.1, 0.35) : 1 - ramp(0.65, 0.95);
  const blue = 1 - ramp(0.3, 0.5);
  return [Math.round(255 * red), Math.round(255 * green), Math.round(255 * blue)];
}

/**
 * Renders one slice as an RGB PNG: the lung-windowed grey slice, with the heatmap blended
 * over it where the heat reaches MIN_VISIBLE_HEAT, more opaque as the heat rises.
 * @param grey size x size grey values in [0, 1], row-major.
 * @param heat size x size heat values in [0, 1], row-major.
 * @throws Error when either array does not hold size x size values.
 */
export function renderOverlayPng(grey: Float32Array, heat: Float32Array, size: number): Buffer {
  const pixels = size * size;
  if (grey.length !== pixels || heat.length !== pixels) {
    throw new Error(`renderOverlayPng: expected ${pixels} grey and heat values for a ${size}x${size} slice, got ${grey.length} and ${heat.length}.`);
  }
  const png = new PNG({ width: size, height: size, colorType: 2 });
  for (let i = 0; i < pixels; i++) {
    const base = Math.round(255 * Math.min(1, Math.max(0, grey[i])));
    let [r, g, b] = [base, base, base];
    if (heat[i] >= MIN_VISIBLE_HEAT) {
      const alpha = MAX_OPACITY * heat[i];
      const [hr, hg, hb] = heatColour(heat[i]);
      r = Math.round((1 - alpha) * base + alpha * hr);
      g = Math.round((1 - alpha) * base + alpha * hg);
      b = Math.round((1 - alpha) * base + alpha * hb);
    }
    png.data[4 * i] = r;
    png.data[4 * i + 1] = g;
    png.data[4 * i + 2] = b;
    png.data[4 * i + 3] = 255;
  }
  return PNG.sync.write(png, { colorType: 2 });
}

export interface SuspiciousSlice {
  /** Index of the slice in the model input. */
  slice: number;
  /** Maximum of the slice's Grad-CAM map, relative to the exam's maximum (1 for the top slice). */
  peakHeat: number;
}

/**
 * Ranks slices by the peak of their Grad-CAM map and returns the `count` highest, highest
 * first. Slices whose map is all zero carry no evidence for the class and are left out.
 */
export function mostSuspiciousSlices(cam: GradCamResult, count: number): SuspiciousSlice[] {
  const pixels = cam.size * cam.size;
  const peaks: SuspiciousSlice[] = [];
  for (let slice = 0; slice < cam.slices; slice++) {
    let peak = 0;
    for (let i = slice * pixels; i < (slice + 1) * pixels; i++) {
      peak = Math.max(peak, cam.heatmap[i]);
    }
    if (peak > 0) {
      peaks.push({ slice, peakHeat: peak });
    }
  }
  return peaks.sort((a, b) => b.peakHeat - a.peakHeat || a.slice - b.slice).slice(0, count);
}
