export {
  initBackend,
  chooseBackend,
  BACKEND_LADDER,
  BackendUnavailableError,
  type BackendName,
  type BackendAttempt,
  type BackendChoice,
  type InitBackendOptions,
  type ModuleLoader,
} from './backend/backend';
export { registerWasmGradientKernels } from './kernels/register';
export { CLASSES, type CovnetClass, type ClassLabel } from './covnet/classes';
export { createCovnet, Covnet, type CovnetOptions, type ClassProbabilities, type Evaluation } from './covnet/covnet';
export type { BackboneName } from './covnet/backbones';
export type { GradCamResult } from './covnet/grad-cam';
export type { ExamInput, LabelledExam } from './covnet/exam';
export type { NamedWeight } from './covnet/named-weights';
export type { TrainHyperParameters, TrainResult } from './covnet/training';
export * from './metrics';
