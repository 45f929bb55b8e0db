import { FedAvgAccumulator, type ModelLayout } from '../apps/coordinator/src/aggregation/fedavg';
import type { NamedTensor } from '@covnet/protocol';

// Parameter count of COVNet with a ResNet-50 backbone and a 3-class head,
// as the PyTorch reference model counts it.
const RESNET50_PARAMETERS = 23_514_179;
const SITES = 6;
const TENSORS = 320;

function syntheticLayout(): ModelLayout {
  const base = Math.floor(RESNET50_PARAMETERS / TENSORS);
  return Array.from({ length: TENSORS }, (_, i) => ({
    name: `layer${i}/kernel`,
    shape: [i === TENSORS - 1 ? RESNET50_PARAMETERS - base * (TENSORS - 1) : base],
  }));
}

function update(layout: ModelLayout, seed: number): NamedTensor[] {
  let x = seed;
  return layout.map((entry) => {
    const data = new Float32Array(entry.shape[0]);
    for (let i = 0; i < data.length; i++) {
      x = (x * 1664525 + 1013904223) >>> 0;
      data[i] = x / 4294967296 - 0.5;
    }
    return { name: entry.name, shape: entry.shape, data };
  });
}

/**
 * FedAvg of six ResNet-50-sized updates folded into the coordinator's running
 * sum: gigabytes of float32 updates per second, median of 5, and peak RSS.
 */
export async function benchFedAvg() {
  const layout = syntheticLayout();
  const updates = Array.from({ length: SITES }, (_, s) => update(layout, s + 1));
  const times: number[] = [];
  for (let run = 0; run < 6; run++) {
    const started = process.hrtime.bigint();
    const accumulator = new FedAvgAccumulator(layout);
    updates.forEach((u, s) => accumulator.add(u, 100 + 37 * s));
    accumulator.result();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (run > 0) times.push(seconds);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  const gigabytes = (SITES * RESNET50_PARAMETERS * 4) / 1e9;
  return [
    { name: 'fedavg.resnet50x6.gb_per_s', value: gigabytes / median, unit: 'GB/s', note: `median ${(median * 1000).toFixed(0)} ms` },
    { name: 'fedavg.resnet50x6.peak_rss_mb', value: process.resourceUsage().maxRSS / 1024, unit: 'MB', note: 'includes the six updates held by the benchmark' },
  ];
}
