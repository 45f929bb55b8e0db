import * as tf from '@tensorflow/tfjs';
import { batchNormalization } from './batch-norm-layer';

export type BackboneName = 'resnet50' | 'resnet18' | 'small';

type SymbolicTensor = tf.SymbolicTensor;
type Initializer = ReturnType<typeof tf.initializers.heNormal>;

/**
 * Hands out seeded initializers. Each call advances a counter, so the same seed and the
 * same build order give the same weights in every process.
 */
export class SeededInitializers {
  private counter = 0;

  constructor(private readonly seed: number) {}

  private nextSeed(): number {
    this.counter += 1;
    return this.seed * 10_007 + this.counter;
  }

  heNormal(): Initializer {
    return tf.initializers.heNormal({ seed: this.nextSeed() });
  }

  glorotUniform(): Initializer {
    return tf.initializers.glorotUniform({ seed: this.nextSeed() });
  }
}

interface ConvSpec {
  name: string;
  filters: number;
  kernelSize: number;
  strides?: number;
  /** Symmetric zero padding added before a 'valid' convolution, as PyTorch pads. */
  pad?: number;
}

// PyTorch BatchNorm2d defaults: momentum 0.1 on the new batch (0.9 on the moving value
// in Keras terms) and epsilon 1e-5.
const BN_MOMENTUM = 0.9;
const BN_EPSILON = 1e-5;

function conv(x: SymbolicTensor, spec: ConvSpec, init: SeededInitializers): SymbolicTensor {
  let input = x;
  const strides = spec.strides ?? 1;
  const pad = spec.pad ?? 0;
  // At stride 1, tfjs 'same' padding of an odd kernel is symmetric, as PyTorch pads, and the
  // convolution pads as it reads. A separate padding layer would copy the activation, and
  // its gradient would copy it back, at each of ResNet-50's 13 such convolutions.
  const same = strides === 1 && pad > 0 && 2 * pad === spec.kernelSize - 1;
  // For stride 2 tfjs 'same' puts the odd pixel at the bottom/right, and PyTorch pads
  // symmetrically. Explicit symmetric padding keeps the ResNet geometry of torchvision.
  if (pad > 0 && !same) {
    input = tf.layers.zeroPadding2d({ padding: pad, name: `${spec.name}_pad` }).apply(input) as SymbolicTensor;
  }
  return tf.layers
    .conv2d({
      name: spec.name,
      filters: spec.filters,
      kernelSize: spec.kernelSize,
      strides,
      padding: same ? 'same' : 'valid',
      useBias: false,
      kernelInitializer: init.heNormal(),
    })
    .apply(input) as SymbolicTensor;
}

function batchNorm(x: SymbolicTensor, name: string): SymbolicTensor {
  return batchNormalization({ name, axis: -1, momentum: BN_MOMENTUM, epsilon: BN_EPSILON }).apply(x) as SymbolicTensor;
}

function relu(x: SymbolicTensor, name: string): SymbolicTensor {
  return tf.layers.reLU({ name }).apply(x) as SymbolicTensor;
}

function convBnRelu(x: SymbolicTensor, spec: ConvSpec, bnName: string, reluName: string, init: SeededInitializers): SymbolicTensor {
  return relu(batchNorm(conv(x, spec, init), bnName), reluName);
}

/** 7x7/2 convolution and 3x3/2 max pooling, both padded as in torchvision's ResNet. */
function resnetStem(x: SymbolicTensor, init: SeededInitializers): SymbolicTensor {
  const y = convBnRelu(x, { name: 'stem_conv', filters: 64, kernelSize: 7, strides: 2, pad: 3 }, 'stem_bn', 'stem_relu', init);
  // Zero padding equals PyTorch's -inf padding here because the input is a ReLU output.
  const padded = tf.layers.zeroPadding2d({ padding: 1, name: 'stem_pool_pad' }).apply(y) as SymbolicTensor;
  return tf.layers.maxPooling2d({ name: 'stem_pool', poolSize: 3, strides: 2, padding: 'valid' }).apply(padded) as SymbolicTensor;
}

function shortcut(x: SymbolicTensor, prefix: string, filters: number, strides: number, needed: boolean, init: SeededInitializers): SymbolicTensor {
  if (!needed) {
    return x;
  }
  const y = conv(x, { name: `${prefix}_shortcut_conv`, filters, kernelSize: 1, strides }, init);
  return batchNorm(y, `${prefix}_shortcut_bn`);
}

function addAndRelu(a: SymbolicTensor, b: SymbolicTensor, prefix: string): SymbolicTensor {
  const sum = tf.layers.add({ name: `${prefix}_add` }).apply([a, b]) as SymbolicTensor;
  return relu(sum, `${prefix}_out`);
}

/** ResNet v1.5 bottleneck: the stride sits on the 3x3 convolution, as in torchvision. */
function bottleneckBlock(x: SymbolicTensor, prefix: string, width: number, strides: number, init: SeededInitializers): SymbolicTensor {
  const inChannels = x.shape[x.shape.length - 1];
  const outChannels = width * 4;
  const residual = shortcut(x, prefix, outChannels, strides, strides !== 1 || inChannels !== outChannels, init);

  let y = convBnRelu(x, { name: `${prefix}_conv1`, filters: width, kernelSize: 1 }, `${prefix}_bn1`, `${prefix}_relu1`, init);
  y = convBnRelu(y, { name: `${prefix}_conv2`, filters: width, kernelSize: 3, strides, pad: 1 }, `${prefix}_bn2`, `${prefix}_relu2`, init);
  y = batchNorm(conv(y, { name: `${prefix}_conv3`, filters: outChannels, kernelSize: 1 }, init), `${prefix}_bn3`);
  return addAndRelu(y, residual, prefix);
}

function basicBlock(x: SymbolicTensor, prefix: string, width: number, strides: number, init: SeededInitializers): SymbolicTensor {
  const inChannels = x.shape[x.shape.length - 1];
  const residual = shortcut(x, prefix, width, strides, strides !== 1 || inChannels !== width, init);

  let y = convBnRelu(x, { name: `${prefix}_conv1`, filters: width, kernelSize: 3, strides, pad: 1 }, `${prefix}_bn1`, `${prefix}_relu1`, init);
  y = batchNorm(conv(y, { name: `${prefix}_conv2`, filters: width, kernelSize: 3, pad: 1 }, init), `${prefix}_bn2`);
  return addAndRelu(y, residual, prefix);
}

type BlockBuilder = typeof bottleneckBlock;

function resnet(x: SymbolicTensor, blocksPerStage: number[], block: BlockBuilder, init: SeededInitializers): SymbolicTensor {
  const widths = [64, 128, 256, 512];
  let y = resnetStem(x, init);
  blocksPerStage.forEach((blocks, stageIndex) => {
    for (let b = 0; b < blocks; b++) {
      const strides = stageIndex > 0 && b === 0 ? 2 : 1;
      y = block(y, `stage${stageIndex + 1}_block${b + 1}`, widths[stageIndex], strides, init);
    }
  });
  return y;
}

/** Four stride-2 conv-BN-ReLU stages (16, 32, 64, 96 channels) for CPU sites and tests. */
function smallBackbone(x: SymbolicTensor, init: SeededInitializers): SymbolicTensor {
  let y = x;
  [16, 32, 64, 96].forEach((filters, i) => {
    const prefix = `stage${i + 1}`;
    y = convBnRelu(y, { name: `${prefix}_conv`, filters, kernelSize: 3, strides: 2, pad: 1 }, `${prefix}_bn`, `${prefix}_relu`, init);
  });
  return y;
}

/** Builds the per-slice feature extractor on `x` ([slices, S, S, 3]); returns the last feature map. */
export function buildBackbone(name: BackboneName, x: SymbolicTensor, init: SeededInitializers): SymbolicTensor {
  switch (name) {
    case 'resnet50':
      return resnet(x, [3, 4, 6, 3], bottleneckBlock, init);
    case 'resnet18':
      return resnet(x, [2, 2, 2, 2], basicBlock, init);
    case 'small':
      return smallBackbone(x, init);
  }
}
