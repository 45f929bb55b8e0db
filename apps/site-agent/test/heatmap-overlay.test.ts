import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import type { GradCamResult } from '@covnet/model';
import { heatColour, mostSuspiciousSlices, renderOverlayPng } from '../src/commands/heatmap-overlay';

describe('renderOverlayPng', () => {
  describe('when a 2x2 slice has one hot pixel', () => {
    it('blends colour only where heat is shown', () => {
      const grey = Float32Array.from([0, 0.5, 1, 0.5]);
      const heat = Float32Array.from([0, 0.1, 0, 1]);
      const png = PNG.sync.read(renderOverlayPng(grey, heat, 2));
      expect(png.width).toBe(2);
      expect(png.height).toBe(2);
      const rgb = (i: number) => Array.from(png.data.subarray(4 * i, 4 * i + 3));
      expect(rgb(0)).toEqual([0, 0, 0]);
      // Heat 0.1 is below the 0.2 shown, so the grey 0.5 stays: round(127.5) = 128.
      expect(rgb(1)).toEqual([128, 128, 128]);
      expect(rgb(2)).toEqual([255, 255, 255]);
      // Heat 1 is red at opacity 0.6 over grey 128: 0.4 * 128 + 0.6 * 255 = 204.2, 0.4 * 128 = 51.2.
      expect(rgb(3)).toEqual([204, 51, 51]);
    });
  });

  describe('when the arrays do not match the size', () => {
    it('rejects them', () => {
      expect(() => renderOverlayPng(new Float32Array(3), new Float32Array(4), 2)).toThrow(/expected 4 grey and heat values/);
    });
  });
});

describe('heatColour', () => {
  it('runs from blue to red', () => {
    expect(heatColour(0)).toEqual([0, 0, 255]);
    expect(heatColour(1)).toEqual([255, 0, 0]);
    expect(heatColour(0.65)).toEqual([255, 255, 0]);
  });
});

describe('mostSuspiciousSlices', () => {
  it('orders slices by peak heat', () => {
    const cam: GradCamResult = {
      classIndex: 0,
      probs: [0.8, 0.1, 0.1],
      slices: 4,
      size: 1,
      heatmap: Float32Array.from([0.3, 1, 0, 0.7]),
      featureSize: 1,
      rawCam: Float32Array.from([0.3, 1, 0, 0.7]),
    };
    const top = mostSuspiciousSlices(cam, 2);
    expect(top.map((s) => s.slice)).toEqual([1, 3]);
    expect(top[0].peakHeat).toBe(1);
    expect(top[1].peakHeat).toBeCloseTo(0.7, 6);
    // The slice without heat is never listed.
    expect(mostSuspiciousSlices(cam, 10).map((s) => s.slice)).toEqual([1, 3, 0]);
  });
});
