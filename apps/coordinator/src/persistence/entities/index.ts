import { ExperimentEntity } from './experiment.entity';
import { ModelVersionEntity } from './model-version.entity';
import { RoundEntity } from './round.entity';
import { SiteMetricEntity } from './site-metric.entity';
import { SiteEntity } from './site.entity';
import { UpdateEntity } from './update.entity';

export { ExperimentEntity, ModelVersionEntity, RoundEntity, SiteMetricEntity, SiteEntity, UpdateEntity };
export type { LeftOutReason, LeftOutSite } from './round.entity';

export const ENTITIES = [SiteEntity, RoundEntity, ModelVersionEntity, UpdateEntity, SiteMetricEntity, ExperimentEntity];
