import { Module, type DynamicModule } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import type { Logger } from 'pino';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from './config/config';
import { ROOT_LOGGER } from './logging/logger';
import { typeOrmOptions } from './persistence/database';
import { ENTITIES } from './persistence/entities';
import { Clock } from './clock';
import { CoordinatorEvents } from './events/coordinator-events';
import { AdminToken } from './auth/admin-token.service';
import { AdminGuard } from './auth/admin.guard';
import { FailedAuthLimiter } from './auth/failed-auth-limiter';
import { SiteRegistry } from './sites/site-registry.service';
import { SiteSessions } from './sites/site-sessions';
import { CheckpointFiles } from './models/checkpoint-files';
import { ExperimentRuntimes } from './experiments/experiment-runtimes';
import { FederationGateway } from './gateway/federation.gateway';
import { DashboardGateway } from './dashboard/dashboard.gateway';
import { SitesController } from './api/sites.controller';
import { RoundsController } from './api/rounds.controller';
import { ModelsController } from './api/models.controller';
import { MetricsController } from './api/metrics.controller';
import { ExperimentsController } from './api/experiments.controller';
import { OverviewController } from './api/overview.controller';
import { HealthController } from './api/health.controller';

@Module({})
export class CoordinatorModule {
  static forRoot(config: CoordinatorConfig, logger: Logger): DynamicModule {
    return {
      module: CoordinatorModule,
      imports: [TypeOrmModule.forRoot(typeOrmOptions(config.database)), TypeOrmModule.forFeature(ENTITIES)],
      providers: [
        { provide: COORDINATOR_CONFIG, useValue: config },
        { provide: ROOT_LOGGER, useValue: logger },
        { provide: APP_GUARD, useClass: AdminGuard },
        Clock,
        CoordinatorEvents,
        AdminToken,
        FailedAuthLimiter,
        SiteRegistry,
        SiteSessions,
        CheckpointFiles,
        // Each experiment's model store, metrics, round records and scheduler
        // are created by ExperimentRuntimes, one set per experiment.
        ExperimentRuntimes,
        FederationGateway,
        DashboardGateway,
      ],
      controllers: [
        OverviewController,
        SitesController,
        RoundsController,
        MetricsController,
        ModelsController,
        ExperimentsController,
        HealthController,
      ],
    };
  }
}
