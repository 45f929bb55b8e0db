import * as tf from '@tensorflow/tfjs';
import type { ClassLabel } from './classes';

/** One exam as model input: `slices` grey slices of size x size, row-major, values in [0, 1]. */
export interface ExamInput {
  slices: number;
  size: number;
  data: Float32Array;
}

export interface LabelledExam {
  input: ExamInput;
  label: ClassLabel;
}

/**
 * Checks an exam against the model's input size.
 * @throws Error naming the field that is invalid.
 */
export function validateExam(exam: ExamInput, inputSize: number, where = 'exam'): void {
  if (!Number.isInteger(exam.slices) || exam.slices < 1) {
    throw new Error(`${where}: slices must be a positive integer, got ${exam.slices}.`);
  }
  if (exam.size !== inputSize) {
    throw new Error(`${where}: size is ${exam.size}, expected ${inputSize} (the model's input size).`);
  }
  const expected = exam.slices * exam.size * exam.size;
  if (!(exam.data instanceof Float32Array) || exam.data.length !== expected) {
    throw new Error(`${where}: data must be a Float32Array of ${expected} values (slices x size x size), got ${exam.data?.length}.`);
  }
}

export function validateLabel(label: number, where: string): void {
  if (label !== 0 && label !== 1 && label !== 2) {
    throw new Error(`${where}: label must be 0 (covid19), 1 (cap) or 2 (non_pneumonia), got ${label}.`);
  }
}

/** [slices, size, size, 1] tensor of the exam; the model repeats the grey channel to three. */
export function examTensor(exam: ExamInput): tf.Tensor4D {
  return tf.tensor4d(exam.data, [exam.slices, exam.size, exam.size, 1], 'float32');
}

/** Left-right mirror of every slice. */
export function flipHorizontally(exam: ExamInput): ExamInput {
  const { slices, size, data } = exam;
  const flipped = new Float32Array(data.length);
  for (let row = 0; row < slices * size; row++) {
    const start = row * size;
    for (let col = 0; col < size; col++) {
      flipped[start + col] = data[start + size - 1 - col];
    }
  }
  return { slices, size, data: flipped };
}
