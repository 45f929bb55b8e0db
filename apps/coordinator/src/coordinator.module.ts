import { Module, type DynamicModule } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import type { Logger } from 'pino';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from './config/config';
import { ROOT_LOGGER } from './logging/logger';
import { typeOrmOptions } from './persistence/database';
import { ENTITIES } from './persistence/entities';
import { Clock } from './clock';
import { SiteRegistry } from './sites/site-registry.service';
import { SiteSessions } from './sites/site-sessions';
import { CheckpointFiles } from './models/checkpoint-files';
import { ModelStore } from './models/model-store.service';
import { MetricsService } from './metrics/metrics.service';
import { RoundRecords } from './rounds/round-records';
import { RoundScheduler } from './rounds/round-scheduler.service';
import { FederationGateway } from './gateway/federation.gateway';
import { SitesController } from './api/sites.controller';
import { RoundsController } from './api/rounds.controller';
import { ModelsController } from './api/models.controller';

@Module({})
export class CoordinatorModule {
  static forRoot(config: CoordinatorConfig, logger: Logger): DynamicModule {
    return {
      module: CoordinatorModule,
      imports: [TypeOrmModule.forRoot(typeOrmOptions(config.database)), TypeOrmModule.forFeature(ENTITIES)],
      providers: [
        { provide: COORDINATOR_CONFIG, useValue: config },
        { provide: ROOT_LOGGER, useValue: logger },
        Clock,
        SiteRegistry,
        SiteSessions,
        CheckpointFiles,
        ModelStore,
        MetricsService,
        RoundRecords,
        RoundScheduler,
        FederationGateway,
      ],
      controllers: [SitesController, RoundsController, ModelsController],
    };
  }
}
