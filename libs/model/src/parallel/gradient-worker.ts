import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../backend/backend';
import { buildCovnetModel } from '../covnet/covnet';
import { shardGradients } from '../covnet/training';
import { examTensor } from '../covnet/exam';
import { sliceFeatureModel } from '../covnet/sub-models';
import { concatenatedViews, copyValues } from './shared-values';
import type { WorkerMessage, WorkerRequest, WorkerSetup } from './messages';

// Entry of one gradient worker thread: a wasm backend and a replica of the model, which
// computes the gradient of its share of each batch on its own core.

function send(message: WorkerMessage): void {
  let transfer: ArrayBuffer[] = [];
  if (message.type === 'gradients') {
    transfer = message.movingStatistics.map((a) => a.buffer as ArrayBuffer);
  } else if (message.type === 'features') {
    transfer = [message.features.buffer as ArrayBuffer];
  }
  parentPort!.postMessage(message, transfer);
}

// The gradients go back through one shared buffer that this worker allocates once: the
// main thread reads them in place, so a step copies no gradient between threads.
let gradientBuffer: SharedArrayBuffer | undefined;

async function start(): Promise<void> {
  const choice = await initBackend({ prefer: 'wasm' });
  const model = buildCovnetModel(workerData as WorkerSetup);
  parentPort!.on('message', (request: WorkerRequest) => {
    handle(model, request).catch((error: Error) => send({ type: 'failed', id: request.id, message: error.message, stack: error.stack }));
  });
  send({ type: 'ready', backend: choice.backend });
}

async function handle(model: tf.LayersModel, request: WorkerRequest): Promise<void> {
  const weights = concatenatedViews(
    request.weights,
    model.weights.map((w) => w.read().size),
    'gradient worker: the shared weights',
  );
  model.weights.forEach((w, i) => {
    const value = tf.tensor(weights[i], w.read().shape);
    w.write(value);
    value.dispose();
  });
  if (request.kind === 'features') {
    const features = tf.tidy(() => sliceFeatureModel(model).predict(examTensor(request.exam), { batchSize: 8 }) as tf.Tensor2D);
    const values = new Float32Array(await features.data());
    const channels = features.shape[1];
    features.dispose();
    send({ type: 'features', id: request.id, features: values, channels });
    return;
  }
  const sizes = model.trainableWeights.map((w) => w.read().size);
  gradientBuffer ??= new SharedArrayBuffer(sizes.reduce((a, b) => a + b, 0) * Float32Array.BYTES_PER_ELEMENT);
  const targets = concatenatedViews(gradientBuffer, sizes, 'gradient worker: its gradient buffer');
  const { lossSum } = await shardGradients(model, request.exams, (k, gradient) => copyValues(gradient, targets[k]));
  // dataSync may return the backend's own buffer, so the statistics are copied before transfer.
  const movingStatistics = model.nonTrainableWeights.map((w) => new Float32Array(w.read().dataSync()));
  send({ type: 'gradients', id: request.id, lossSum, gradients: gradientBuffer, gradientSizes: sizes, movingStatistics });
}

start().catch((error: Error) => send({ type: 'failed', message: error.message, stack: error.stack }));
