import { z } from 'zod';
import { AdminDesktop, AdminPool, Pool, PoolCreateBody, PoolUpdateBody } from '@vdi/shared';
import { desktopRow } from '../../store/rows.js';
import { poolFromRow, type PoolAdmin } from '../../broker/pools.js';
import { actorOf } from '../actor.js';
import { IdParam, type AdminScope } from './scope.js';

/** Pools with their counts, and their desktops: list, create, edit, drain, delete. */
export function adminPoolRoutes(admin: AdminScope): void {
  const { db, clock, broker, pools } = admin.deps;

  const adminPool = async (p: Awaited<ReturnType<PoolAdmin['list']>>[number]) => {
    const ds = await db
      .selectFrom('desktops')
      .select('state')
      .where('pool_id', '=', p.id)
      .execute();
    const ss = await db
      .selectFrom('sessions')
      .select('id')
      .where('pool_id', '=', p.id)
      .where('state', '<>', 'ended')
      .execute();
    return {
      ...poolFromRow(p),
      desktops: ds.filter((d) => d.state !== 'stopped').length,
      ready: ds.filter((d) => d.state === 'ready').length,
      inUse: ds.filter((d) => d.state === 'in-use').length,
      stopped: ds.filter((d) => d.state === 'stopped').length,
      sessions: ss.length,
    };
  };

  admin.route(
    {
      method: 'get',
      path: '/pools',
      summary: 'List pools with desktop counts',
      response: z.array(AdminPool),
    },
    async () => Promise.all((await pools.list()).map(adminPool)),
  );

  admin.route(
    {
      method: 'post',
      path: '/pools',
      summary: 'Create a pool',
      body: PoolCreateBody,
      response: Pool,
    },
    async (req, res) => {
      res.status(201);
      return pools.create(req.parsedBody, actorOf(req));
    },
  );

  admin.route(
    {
      method: 'get',
      path: '/pools/:id',
      summary: 'One pool',
      response: AdminPool,
    },
    async (req) => adminPool(await broker.pool(IdParam.parse(req.params).id)),
  );

  admin.route(
    {
      method: 'patch',
      path: '/pools/:id',
      summary: 'Edit, resize or drain a pool',
      body: PoolUpdateBody,
      response: Pool,
    },
    async (req) => pools.update(IdParam.parse(req.params).id, req.parsedBody, actorOf(req)),
  );

  admin.route(
    {
      method: 'delete',
      path: '/pools/:id',
      summary: 'Delete a pool (refused while sessions are live unless force=true)',
      query: z.strictObject({ force: z.enum(['true', 'false']).optional() }),
    },
    async (req) => {
      const force = req.query.force === 'true';
      await pools.delete(IdParam.parse(req.params).id, force, actorOf(req));
    },
  );

  admin.route(
    {
      method: 'get',
      path: '/pools/:id/desktops',
      summary: 'Desktops of a pool',
      response: z.array(AdminDesktop),
    },
    async (req) => {
      const pool = await broker.pool(IdParam.parse(req.params).id);
      const provider = broker.provider(pool.provider);
      const rows = (
        await db
          .selectFrom('desktops')
          .selectAll()
          .where('pool_id', '=', pool.id)
          .orderBy('created_at')
          .execute()
      ).map(desktopRow);
      return Promise.all(
        rows.map(async (d) => ({
          id: d.id,
          name: d.name,
          state: d.state,
          ownerUserId: d.owner_user_id,
          health: d.handle ? await broker.desktopHealth(d.id) : 'stopped',
          error: d.error,
          stateSince: d.state_since,
          facts: d.handle && provider.describe ? provider.describe(d.handle) : {},
          isolation: admin.isolation.of(pool.provider, d.handle ?? undefined, clock.now()),
        })),
      );
    },
  );
}
