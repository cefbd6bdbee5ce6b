import { z } from 'zod';
import { Host, HostUpdateBody } from '@vdi/shared';
import { actorOf } from '../actor.js';
import { IdParam, type AdminScope } from './scope.js';

/** Hosts desktops are placed on (LXD cluster members): their load; drain one, set its maximum. */
export function adminHostRoutes(admin: AdminScope): void {
  const { broker } = admin.deps;

  admin.route(
    {
      method: 'get',
      path: '/hosts',
      summary: 'List the hosts desktops are placed on, with their load',
      response: z.array(Host),
    },
    async () => broker.hosts(),
  );

  admin.route(
    {
      method: 'patch',
      path: '/hosts/:id',
      summary: 'Drain a host (no new desktops there), make it active again, or set its maximum',
      body: HostUpdateBody,
      response: Host,
    },
    async (req) => {
      const b = req.parsedBody;
      return broker.updateHost(
        IdParam.parse(req.params).id,
        {
          ...(b.state !== undefined ? { state: b.state } : {}),
          ...(b.maxSessions !== undefined ? { maxSessions: b.maxSessions } : {}),
        },
        actorOf(req),
      );
    },
  );
}
