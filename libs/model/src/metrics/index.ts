export { rocAuc, oneVsRestAuc, type PerClassAuc } from './roc-auc';
export { confusionMatrix, argmaxRows, sensitivitySpecificity, type SensitivitySpecificity } from './confusion';
export {
  bootstrapAucInterval,
  bootstrapIndices,
  oneVsRestAucIntervals,
  type AucInterval,
  type BootstrapOptions,
  type PerClassAucInterval,
} from './bootstrap';
