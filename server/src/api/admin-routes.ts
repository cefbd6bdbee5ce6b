import { randomUUID } from 'node:crypto';
import type { Router } from 'express';
import { sql, type SqlBool } from 'kysely';
import { z } from 'zod';
import {
  AuditEntry,
  AuditQuery,
  DesktopIsolation,
  Entitlement,
  EntitlementBody,
  Group,
  GroupCreateBody,
  GroupMembersBody,
  Id,
  MessageBody,
  Pool,
  PoolCreateBody,
  PoolUpdateBody,
  SessionInfo,
  User,
  UserCreateBody,
  UserUpdateBody,
} from '@vdi/shared';
import type { Db } from '../store/db.js';
import { isUniqueViolation } from '../store/unique-violation.js';
import { desktopRow } from '../store/rows.js';
import type { Clock } from '../clock.js';
import type { Broker } from '../broker/broker.js';
import type { Actor } from '../broker/actor.js';
import { poolFromRow, type PoolAdmin } from '../broker/pools.js';
import type { Auth } from '../auth/index.js';
import { createUser, userView } from '../auth/users.js';
import { hashPassword } from '../auth/passwords.js';
import { IsolationFacts } from '../providers/sandbox/facts.js';
import type { RfbEndpoint } from '../providers/types.js';
import { HttpError } from './http-error.js';
import type { ApiRegistry } from './registry.js';

const IdParam = z.object({ id: Id });
const SnapshotName = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits and _ . - only');

/** What the gateway knows about live viewers, for the sessions table. */
export interface LiveStats {
  sessionStats(sessionId: string): { viewers: number; shadows: number; kbps: number; fps: number };
  thumbnail(desktopId: string, endpoint: RfbEndpoint): Promise<Buffer>;
  sendMessage(sessionId: string, text: string, from: string): Promise<number>;
}

export const AdminSession = SessionInfo.extend({
  viewers: z.number(),
  shadows: z.number(),
  kbps: z.number(),
  fps: z.number(),
  lastInputAt: z.string().nullable(),
  provider: z.string(),
  desktopState: z.string(),
  facts: z.record(z.string(), z.string()),
  /** the desktop's account, network, limits and current CPU/memory */
  isolation: DesktopIsolation.nullable(),
});

export const AdminPool = Pool.extend({
  desktops: z.number(),
  ready: z.number(),
  inUse: z.number(),
  stopped: z.number(),
  sessions: z.number(),
});

export const AdminDesktop = z.object({
  id: z.string(),
  name: z.string(),
  state: z.string(),
  ownerUserId: z.string().nullable(),
  health: z.string(),
  error: z.string().nullable(),
  stateSince: z.string(),
  facts: z.record(z.string(), z.string()),
  /** the desktop's account, network, limits and current CPU/memory */
  isolation: DesktopIsolation.nullable(),
});

export function adminRoutes(
  router: Router,
  reg: ApiRegistry,
  deps: {
    db: Db;
    clock: Clock;
    auth: Auth;
    broker: Broker;
    pools: PoolAdmin;
    live: LiveStats;
    onUserDisabled: (userId: string) => Promise<void>;
  },
): void {
  const { db, clock, auth, broker, pools, live } = deps;
  const isolation = new IsolationFacts();
  const guard = auth.requireAdmin;
  const P = '/api/admin';
  const actor = (req: { user?: Express.User; ip?: string | undefined }): Actor => ({
    id: req.user!.id,
    name: req.user!.username,
    ip: req.ip ?? null,
  });
  const audit = (
    req: { user?: Express.User; ip?: string | undefined },
    action: string,
    target: string | null,
    detail?: unknown,
  ) =>
    broker.audit.record({ actor: req.user!.username, action, target, ip: req.ip ?? null, detail });

  const getUser = async (id: string) => {
    const row = await db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new HttpError(404, 'NOT_FOUND', 'no such user');
    return row;
  };

  // ---------------------------------------------------------------- users
  reg.add(
    router,
    P,
    {
      method: 'get',
      path: '/users',
      summary: 'List users',
      access: 'admin',
      response: z.array(User),
    },
    guard,
    async () => {
      const rows = await db.selectFrom('users').selectAll().orderBy('username').execute();
      return Promise.all(rows.map((r) => userView(db, r)));
    },
  );

  reg.add(
    router,
    P,
    {
      method: 'post',
      path: '/users',
      summary: 'Create a user',
      access: 'admin',
      body: UserCreateBody,
      response: User,
    },
    guard,
    async (req, res) => {
      const b = req.parsedBody;
      if (
        await db
          .selectFrom('users')
          .select('id')
          .where('username', '=', b.username)
          .executeTakeFirst()
      ) {
        throw new HttpError(409, 'NAME_TAKEN', `user "${b.username}" exists already`);
      }
      // the check above is for the usual case; two creates at once both pass it, and the
      // UNIQUE constraint decides which one wins
      const row = await createUser(db, clock, b).catch((err: unknown) => {
        if (isUniqueViolation(err))
          throw new HttpError(409, 'NAME_TAKEN', `user "${b.username}" exists already`);
        throw err;
      });
      await audit(req, 'user.create', row.id, { username: b.username, role: b.role });
      res.status(201);
      return userView(db, row);
    },
  );

  reg.add(
    router,
    P,
    {
      method: 'patch',
      path: '/users/:id',
      summary: 'Change role, disable/enable, reset password',
      access: 'admin',
      body: UserUpdateBody,
      response: User,
    },
    guard,
    async (req) => {
      const { id } = IdParam.parse(req.params);
      const row = await getUser(id);
      const b = req.parsedBody;
      if (id === req.user!.id && (b.disabled === true || b.role === 'user')) {
        throw new HttpError(409, 'SELF_LOCKOUT', 'you cannot disable or demote your own account');
      }
      const set: Partial<typeof row> = {};
      if (b.role !== undefined) set.role = b.role;
      if (b.disabled !== undefined) set.disabled = b.disabled ? 1 : 0;
      if (b.displayName !== undefined) set.display_name = b.displayName;
      if (b.password !== undefined) set.password_hash = await hashPassword(b.password);
      if (Object.keys(set).length)
        await db.updateTable('users').set(set).where('id', '=', id).execute();
      await audit(req, b.password !== undefined ? 'user.password-reset' : 'user.update', id, {
        ...b,
        password: b.password ? '***' : undefined,
      });
      if (b.disabled === true || b.password !== undefined || b.role !== undefined)
        await deps.onUserDisabled(id);
      return userView(db, { ...row, ...set });
    },
  );

  reg.add(
    router,
    P,
    {
      method: 'delete',
      path: '/users/:id',
      summary: 'Delete a user (their sessions are logged off)',
      access: 'admin',
    },
    guard,
    async (req) => {
      const { id } = IdParam.parse(req.params);
      const row = await getUser(id);
      if (id === req.user!.id)
        throw new HttpError(409, 'SELF_LOCKOUT', 'you cannot delete your own account');
      await broker.removeUser(row, actor(req), () => deps.onUserDisabled(id));
    },
  );

  // ---------------------------------------------------------------- groups
  const groupView = async (g: { id: string; name: string; description: string }) => ({
    ...g,
    members: (
      await db.selectFrom('group_members').select('user_id').where('group_id', '=', g.id).execute()
    ).map((m) => m.user_id),
  });

  reg.add(
    router,
    P,
    {
      method: 'get',
      path: '/groups',
      summary: 'List groups',
      access: 'admin',
      response: z.array(Group),
    },
    guard,
    async () => {
      const rows = await db
        .selectFrom('groups')
        .select(['id', 'name', 'description'])
        .orderBy('name')
        .execute();
      return Promise.all(rows.map(groupView));
    },
  );

  reg.add(
    router,
    P,
    {
      method: 'post',
      path: '/groups',
      summary: 'Create a group',
      access: 'admin',
      body: GroupCreateBody,
      response: Group,
    },
    guard,
    async (req, res) => {
      const b = req.parsedBody;
      if (await db.selectFrom('groups').select('id').where('name', '=', b.name).executeTakeFirst())
        throw new HttpError(409, 'NAME_TAKEN', `group "${b.name}" exists already`);
      const g = {
        id: randomUUID(),
        name: b.name,
        description: b.description,
        created_at: new Date(clock.now()).toISOString(),
      };
      await db
        .insertInto('groups')
        .values(g)
        .execute()
        .catch((err: unknown) => {
          if (isUniqueViolation(err))
            throw new HttpError(409, 'NAME_TAKEN', `group "${b.name}" exists already`);
          throw err;
        });
      await audit(req, 'group.create', g.id, { name: g.name });
      res.status(201);
      return groupView(g);
    },
  );

  reg.add(
    router,
    P,
    {
      method: 'put',
      path: '/groups/:id/members',
      summary: 'Set the members of a group',
      access: 'admin',
      body: GroupMembersBody,
      response: Group,
    },
    guard,
    async (req) => {
      const { id } = IdParam.parse(req.params);
      const g = await db
        .selectFrom('groups')
        .select(['id', 'name', 'description'])
        .where('id', '=', id)
        .executeTakeFirst();
      if (!g) throw new HttpError(404, 'NOT_FOUND', 'no such group');
      const ids = [...new Set(req.parsedBody.userIds)];
      if (ids.length) {
        const found = await db.selectFrom('users').select('id').where('id', 'in', ids).execute();
        if (found.length !== ids.length)
          throw new HttpError(400, 'INVALID', 'some user ids do not exist');
      }
      await db.transaction().execute(async (tx) => {
        await tx.deleteFrom('group_members').where('group_id', '=', id).execute();
        if (ids.length)
          await tx
            .insertInto('group_members')
            .values(ids.map((user_id) => ({ group_id: id, user_id })))
            .execute();
      });
      await audit(req, 'group.members', id, { userIds: ids });
      return groupView(g);
    },
  );

  reg.add(
    router,
    P,
    { method: 'delete', path: '/groups/:id', summary: 'Delete a group', access: 'admin' },
    guard,
    async (req) => {
      const { id } = IdParam.parse(req.params);
      await db
        .deleteFrom('entitlements')
        .where('principal_type', '=', 'group')
        .where('principal_id', '=', id)
        .execute();
      await db.deleteFrom('group_members').where('group_id', '=', id).execute();
      const r = await db.deleteFrom('groups').where('id', '=', id).executeTakeFirst();
      if (!Number(r.numDeletedRows)) throw new HttpError(404, 'NOT_FOUND', 'no such group');
      await audit(req, 'group.delete', id);
    },
  );

  // ---------------------------------------------------------------- pools
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

  reg.add(
    router,
    P,
    {
      method: 'get',
      path: '/pools',
      summary: 'List pools with desktop counts',
      access: 'admin',
      response: z.array(AdminPool),
    },
    guard,
    async () => Promise.all((await pools.list()).map(adminPool)),
  );

  reg.add(
    router,
    P,
    {
      method: 'post',
      path: '/pools',
      summary: 'Create a pool',
      access: 'admin',
      body: PoolCreateBody,
      response: Pool,
    },
    guard,
    async (req, res) => {
      res.status(201);
      return pools.create(req.parsedBody, actor(req));
    },
  );

  reg.add(
    router,
    P,
    {
      method: 'get',
      path: '/pools/:id',
      summary: 'One pool',
      access: 'admin',
      response: AdminPool,
    },
    guard,
    async (req) => adminPool(await broker.pool(IdParam.parse(req.params).id)),
  );

  reg.add(
    router,
    P,
    {
      method: 'patch',
      path: '/pools/:id',
      summary: 'Edit, resize or drain a pool',
      access: 'admin',
      body: PoolUpdateBody,
      response: Pool,
    },
    guard,
    async (req) => pools.update(IdParam.parse(req.params).id, req.parsedBody, actor(req)),
  );

  reg.add(
    router,
    P,
    {
      method: 'delete',
      path: '/pools/:id',
      summary: 'Delete a pool (refused while sessions are live unless force=true)',
      access: 'admin',
      query: z.strictObject({ force: z.enum(['true', 'false']).optional() }),
    },
    guard,
    async (req) => {
      const force = req.query.force === 'true';
      await pools.delete(IdParam.parse(req.params).id, force, actor(req));
    },
  );

  reg.add(
    router,
    P,
    {
      method: 'get',
      path: '/pools/:id/desktops',
      summary: 'Desktops of a pool',
      access: 'admin',
      response: z.array(AdminDesktop),
    },
    guard,
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
          isolation: isolation.of(pool.provider, d.handle ?? undefined, clock.now()),
        })),
      );
    },
  );

  // --------------------------------------------------------- entitlements
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

  reg.add(
    router,
    P,
    {
      method: 'get',
      path: '/entitlements',
      summary: 'List entitlements',
      access: 'admin',
      response: z.array(Entitlement),
    },
    guard,
    async () => {
      const rows = await db.selectFrom('entitlements').selectAll().orderBy('created_at').execute();
      return Promise.all(rows.map(entView));
    },
  );

  reg.add(
    router,
    P,
    {
      method: 'post',
      path: '/entitlements',
      summary: 'Entitle a user or group to a pool',
      access: 'admin',
      body: EntitlementBody,
      response: Entitlement,
    },
    guard,
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
      await audit(req, 'entitlement.grant', row.id, b);
      res.status(201);
      return entView(row);
    },
  );

  reg.add(
    router,
    P,
    {
      method: 'delete',
      path: '/entitlements/:id',
      summary: 'Revoke an entitlement',
      access: 'admin',
    },
    guard,
    async (req) => {
      const { id } = IdParam.parse(req.params);
      const row = await db
        .selectFrom('entitlements')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirst();
      if (!row) throw new HttpError(404, 'NOT_FOUND', 'no such entitlement');
      await db.deleteFrom('entitlements').where('id', '=', id).execute();
      await audit(req, 'entitlement.revoke', id, {
        poolId: row.pool_id,
        principalType: row.principal_type,
        principalId: row.principal_id,
      });
    },
  );

  // ------------------------------------------------------------- sessions
  reg.add(
    router,
    P,
    {
      method: 'get',
      path: '/sessions',
      summary: 'Live sessions with viewers, bandwidth and frame rate',
      access: 'admin',
      query: z.strictObject({
        state: z
          .string()
          .regex(
            /^(starting|active|disconnected|ended)(,(starting|active|disconnected|ended))*$/,
            'comma-separated session states',
          )
          .optional(),
      }),
      response: z.array(AdminSession),
    },
    guard,
    async (req) => {
      const wanted =
        typeof req.query.state === 'string' && req.query.state
          ? req.query.state.split(',')
          : ['starting', 'active', 'disconnected'];
      const infos = await broker.sessionInfos({ states: wanted });
      return Promise.all(
        infos.map(async (s) => {
          const row = await broker.session(s.id);
          const d = await broker.desktop(s.desktopId);
          const pool = await db
            .selectFrom('pools')
            .select('provider')
            .where('id', '=', s.poolId)
            .executeTakeFirst();
          const provider = pool ? broker.provider(pool.provider) : undefined;
          return {
            ...s,
            ...live.sessionStats(s.id),
            lastInputAt: row?.last_input_at ?? null,
            provider: pool?.provider ?? '?',
            desktopState: d ? (d.handle ? await broker.desktopHealth(d.id) : d.state) : 'gone',
            facts: d?.handle && provider?.describe ? provider.describe(d.handle) : {},
            isolation: pool
              ? isolation.of(pool.provider, d?.handle ?? undefined, clock.now())
              : null,
          };
        }),
      );
    },
  );

  const liveSession = async (id: string) => {
    const s = await broker.session(id);
    if (!s || s.state === 'ended')
      throw new HttpError(404, 'SESSION_NOT_FOUND', 'no live session with that id');
    return s;
  };

  reg.add(
    router,
    P,
    {
      method: 'post',
      path: '/sessions/:id/disconnect',
      summary: 'Disconnect the viewers (desktop keeps running)',
      access: 'admin',
    },
    guard,
    async (req) => {
      await broker.disconnect(IdParam.parse(req.params).id, actor(req));
    },
  );
  reg.add(
    router,
    P,
    {
      method: 'post',
      path: '/sessions/:id/logoff',
      summary: 'Log the session off',
      access: 'admin',
    },
    guard,
    async (req) => {
      const s = await liveSession(IdParam.parse(req.params).id);
      await broker.logoff(s.id, actor(req), `logged off by administrator ${req.user!.username}`);
    },
  );
  reg.add(
    router,
    P,
    {
      method: 'post',
      path: '/sessions/:id/reset',
      summary: 'Reset the desktop of a session',
      access: 'admin',
    },
    guard,
    async (req) => {
      await broker.resetDesktop(IdParam.parse(req.params).id, actor(req));
    },
  );
  reg.add(
    router,
    P,
    {
      method: 'post',
      path: '/sessions/:id/message',
      summary: 'Send a message to the user of a session',
      access: 'admin',
      body: MessageBody,
    },
    guard,
    async (req) => {
      const s = await liveSession(IdParam.parse(req.params).id);
      const n = await live.sendMessage(s.id, req.parsedBody.text, req.user!.username);
      await audit(req, 'session.message', s.id, { text: req.parsedBody.text, delivered: n });
    },
  );

  // ------------------------------------------------------------- desktops

  reg.add(
    router,
    P,
    {
      method: 'get',
      path: '/desktops/:id/thumbnail',
      summary: 'A small JPEG of the desktop',
      access: 'admin',
      produces: 'image/jpeg',
    },
    guard,
    async (req, res) => {
      const { id } = IdParam.parse(req.params);
      const jpeg = await broker.viewDesktop(id, (endpoint) => live.thumbnail(id, endpoint));
      res.setHeader('Content-Type', 'image/jpeg');
      res.setHeader('Cache-Control', 'no-store');
      res.end(jpeg);
    },
  );

  const PowerBody = z.strictObject({ action: z.enum(['reset', 'powerdown', 'stop', 'cont']) });
  reg.add(
    router,
    P,
    {
      method: 'post',
      path: '/desktops/:id/power',
      summary: 'Power action on a VM desktop',
      access: 'admin',
      body: PowerBody,
    },
    guard,
    async (req) => {
      await broker.power(IdParam.parse(req.params).id, req.parsedBody.action, actor(req));
    },
  );

  reg.add(
    router,
    P,
    {
      method: 'get',
      path: '/desktops/:id/snapshots',
      summary: 'Snapshots of a VM desktop',
      access: 'admin',
      response: z.array(z.string()),
    },
    guard,
    async (req) => {
      return broker.snapshots(IdParam.parse(req.params).id);
    },
  );

  reg.add(
    router,
    P,
    {
      method: 'post',
      path: '/desktops/:id/snapshots',
      summary: 'Take a snapshot',
      access: 'admin',
      body: z.strictObject({ name: SnapshotName }),
    },
    guard,
    async (req) => {
      await broker.takeSnapshot(IdParam.parse(req.params).id, req.parsedBody.name, actor(req));
    },
  );

  reg.add(
    router,
    P,
    {
      method: 'post',
      path: '/desktops/:id/snapshots/:name/restore',
      summary: 'Restore a snapshot',
      access: 'admin',
    },
    guard,
    async (req) => {
      const { id } = IdParam.parse(req.params);
      await broker.restoreSnapshot(id, SnapshotName.parse(req.params.name), actor(req));
    },
  );

  // ---------------------------------------------------------------- audit
  reg.add(
    router,
    P,
    {
      method: 'get',
      path: '/audit',
      summary: 'Audit log, newest first',
      access: 'admin',
      query: AuditQuery,
      response: z.array(AuditEntry),
    },
    guard,
    async (req) => {
      const q = AuditQuery.parse(req.query);
      let sel = db.selectFrom('audit_log').selectAll();
      // a prefix, not a pattern: LIKE's wildcards in the filter match only themselves
      if (q.action)
        sel = sel.where(
          sql<SqlBool>`action like ${q.action.replace(/[\\%_]/g, '\\$&') + '%'} escape '\\'`,
        );
      if (q.actor) sel = sel.where('actor', '=', q.actor);
      if (q.target) sel = sel.where('target', '=', q.target);
      if (q.since) sel = sel.where('at', '>=', new Date(q.since).toISOString());
      if (q.until) sel = sel.where('at', '<=', new Date(q.until).toISOString());
      const rows = await sel.orderBy('id', 'desc').limit(q.limit).execute();
      return rows.map((r) => ({
        ...r,
        detail: r.detail ? (JSON.parse(r.detail) as unknown) : null,
      }));
    },
  );
}
