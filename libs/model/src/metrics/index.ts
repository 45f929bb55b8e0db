export { rocAuc, oneVsRestAuc, type PerClassAuc } from './roc-auc';
export { confusionMatrix, argmaxRows, sensitivitySpecificity, type SensitivitySpecificity } from './confusion';
