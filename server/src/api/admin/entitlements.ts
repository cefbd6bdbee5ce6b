import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { Entitlement, EntitlementBody } from '@vdi/shared';
import { isUniqueViolation } from '../../store/unique-violation.js';
import { HttpError } from '../http-error.js';
import { IdParam, type AdminScope } from './scope.js';

/** Who may use which pool: a user or a group, granted or revoked. */
export function adminEntitlementRoutes(admin: AdminScope): void {
  const { db, clock, broker } = admin.deps;

  const entView = async (e: {
    id: string;
    pool_id: string;
    principal_type: 'user' | 'group';
    principal_id: string;
  }) => {
    const pool = await db
      .selectFrom('pools')
      .select('name')
      .where('id', '=', e.pool_id)
      .executeTakeFirst();
    const name =
      e.principal_type === 'user'
        ? (
            await db
              .selectFrom('users')
              .select('username as n')
              .where('id', '=', e.principal_id)
              .executeTakeFirst()
          )?.n
        : (
            await db
              .selectFrom('groups')
              .select('name as n')
              .where('id', '=', e.principal_id)
              .executeTakeFirst()
          )?.n;
    return {
      id: e.id,
      poolId: e.pool_id,
      poolName: pool?.name ?? '?',
      principalType: e.principal_type,
      principalId: e.principal_id,
      principalName: name ?? '?',
    };
  };

  admin.route(
    {
      method: 'get',
      path: '/entitlements',
      summary: 'List entitlements',
      response: z.array(Entitlement),
    },
    async () => {
      const rows = await db.selectFrom('entitlements').selectAll().orderBy('created_at').execute();
      return Promise.all(rows.map(entView));
    },
  );

  admin.route(
    {
      method: 'post',
      path: '/entitlements',
      summary: 'Entitle a user or group to a pool',
      body: EntitlementBody,
      response: Entitlement,
    },
    async (req, res) => {
      const b = req.parsedBody;
      await broker.pool(b.poolId);
      const principal =
        b.principalType === 'user'
          ? await db
              .selectFrom('users')
              .select('id')
              .where('id', '=', b.principalId)
              .executeTakeFirst()
          : await db
              .selectFrom('groups')
              .select('id')
              .where('id', '=', b.principalId)
              .executeTakeFirst();
      if (!principal) throw new HttpError(404, 'NOT_FOUND', `no such ${b.principalType}`);
      const existing = () =>
        db
          .selectFrom('entitlements')
          .selectAll()
          .where('pool_id', '=', b.poolId)
          .where('principal_type', '=', b.principalType)
          .where('principal_id', '=', b.principalId)
          .executeTakeFirst();
      const dup = await existing();
      if (dup) return entView(dup);
      const row = {
        id: randomUUID(),
        pool_id: b.poolId,
        principal_type: b.principalType,
        principal_id: b.principalId,
        created_at: new Date(clock.now()).toISOString(),
      };
      try {
        await db.insertInto('entitlements').values(row).execute();
      } catch (err) {
        // granted by a concurrent request: granting is idempotent, answer with that grant
        const won = isUniqueViolation(err) ? await existing() : undefined;
        if (won) return entView(won);
        throw err;
      }
      await admin.audit(req, 'entitlement.grant', row.id, b);
      res.status(201);
      return entView(row);
    },
  );

  admin.route(
    {
      method: 'delete',
      path: '/entitlements/:id',
      summary: 'Revoke an entitlement',
    },
    async (req) => {
      const { id } = IdParam.parse(req.params);
      const row = await db
        .selectFrom('entitlements')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirst();
      if (!row) throw new HttpError(404, 'NOT_FOUND', 'no such entitlement');
      await db.deleteFrom('entitlements').where('id', '=', id).execute();
      await admin.audit(req, 'entitlement.revoke', id, {
        poolId: row.pool_id,
        principalType: row.principal_type,
        principalId: row.principal_id,
      });
    },
  );
}
