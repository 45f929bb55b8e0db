import { EventEmitter } from 'node:events';
import { Injectable } from '@nestjs/common';

/** Parts of the coordinator's state that the dashboard shows, one topic each. */
export const DASHBOARD_TOPICS = ['sites', 'rounds', 'metrics', 'models', 'experiments'] as const;
export type DashboardTopic = (typeof DASHBOARD_TOPICS)[number];

interface EventMap {
  /** State of `topic` changed in the database or in the set of connected sites. */
  changed: [topic: DashboardTopic];
  /** A site's token was revoked; its connection must end now. */
  siteRevoked: [site: string];
}

/** In-process notifications between the services, the federation gateway and the dashboard gateway. */
@Injectable()
export class CoordinatorEvents extends EventEmitter<EventMap> {
  changed(topic: DashboardTopic): void {
    this.emit('changed', topic);
  }
}
