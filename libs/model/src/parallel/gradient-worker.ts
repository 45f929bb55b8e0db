import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../backend/backend';
import { buildCovnetModel } from '../covnet/covnet';
import { shardGradients } from '../covnet/training';
import { examTensor } from '../covnet/exam';
import { sliceFeatureModel } from '../covnet/sub-models';
import type { WorkerMessage, WorkerRequest, WorkerSetup } from './messages';

// Entry of one gradient worker thread: a wasm backend and a replica of the model, which
// computes the gradient of its share of each batch on its own core.

function send(message: WorkerMessage): void {
  let transfer: ArrayBuffer[] = [];
  if (message.type === 'gradients') {
    transfer = [...message.gradients, ...message.movingStatistics].map((a) => a.buffer as ArrayBuffer);
  } else if (message.type === 'features') {
    transfer = [message.features.buffer as ArrayBuffer];
  }
  parentPort!.postMessage(message, transfer);
}

async function start(): Promise<void> {
  const choice = await initBackend({ prefer: 'wasm' });
  const model = buildCovnetModel(workerData as WorkerSetup);
  parentPort!.on('message', (request: WorkerRequest) => {
    handle(model, request).catch((error: Error) => send({ type: 'failed', id: request.id, message: error.message, stack: error.stack }));
  });
  send({ type: 'ready', backend: choice.backend });
}

async function handle(model: tf.LayersModel, request: WorkerRequest): Promise<void> {
  if (request.weights.length !== model.weights.length) {
    throw new Error(`gradient worker: received ${request.weights.length} weights, the model has ${model.weights.length}.`);
  }
  model.weights.forEach((w, i) => {
    const value = tf.tensor(request.weights[i], w.read().shape);
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
  const { lossSum, gradients } = await shardGradients(model, request.exams);
  // dataSync may return the backend's own buffer, so the statistics are copied before transfer.
  const movingStatistics = model.nonTrainableWeights.map((w) => new Float32Array(w.read().dataSync()));
  send({ type: 'gradients', id: request.id, lossSum, gradients: gradients.map((g) => new Float32Array(g)), movingStatistics });
}

start().catch((error: Error) => send({ type: 'failed', message: error.message, stack: error.stack }));
