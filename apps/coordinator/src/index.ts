export { loadConfig, ConfigError, FLAGS, type CoordinatorConfig, type DatabaseConfig } from './config/config';
export { startCoordinator, type RunningCoordinator } from './coordinator';
export type { FederationSummary } from './rounds/round-scheduler.service';
export { FedAvgAccumulator, fedAvg, firstNonFinite, layoutMismatch, type ModelLayout } from './aggregation/fedavg';
export { pooledAuc } from './metrics/pooled-auc';
