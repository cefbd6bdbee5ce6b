import { z } from 'zod';
import { sql, type SqlBool } from 'kysely';
import { AuditEntry, AuditQuery } from '@vdi/shared';
import type { Db } from '../../store/db.js';
import type { AdminScope } from './scope.js';

/**
 * What the audit targets' ids name: users and groups, pools, desktops, and sessions as
 * "user · pool". Ids of things deleted since are left out (the entry keeps the id).
 */
async function targetNames(db: Db, targets: string[]): Promise<Map<string, string>> {
  const ids = [...new Set(targets)];
  const names = new Map<string, string>();
  if (ids.length === 0) return names;
  const [users, groups, pools, desktops, sessions] = await Promise.all([
    db.selectFrom('users').select(['id', 'username as name']).where('id', 'in', ids).execute(),
    db.selectFrom('groups').select(['id', 'name']).where('id', 'in', ids).execute(),
    db.selectFrom('pools').select(['id', 'name']).where('id', 'in', ids).execute(),
    db.selectFrom('desktops').select(['id', 'name']).where('id', 'in', ids).execute(),
    db
      .selectFrom('sessions as s')
      .leftJoin('users as u', 'u.id', 's.user_id')
      .leftJoin('pools as p', 'p.id', 's.pool_id')
      .select(['s.id as id', 'u.username as user', 'p.name as pool'])
      .where('s.id', 'in', ids)
      .execute(),
  ]);
  for (const r of [...users, ...groups, ...pools, ...desktops]) names.set(r.id, r.name);
  for (const r of sessions)
    names.set(r.id, [r.user ?? 'deleted user', r.pool ?? 'deleted pool'].join(' · '));
  return names;
}

/** The audit log, newest first, filtered by action prefix, actor, target and time. */
export function adminAuditRoutes(admin: AdminScope): void {
  const { db } = admin.deps;

  admin.route(
    {
      method: 'get',
      path: '/audit',
      summary: 'Audit log, newest first',
      query: AuditQuery,
      response: z.array(AuditEntry),
    },
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
      const names = await targetNames(
        db,
        rows.flatMap((r) => (r.target ? [r.target] : [])),
      );
      return rows.map((r) => {
        const targetName = r.target ? names.get(r.target) : undefined;
        return {
          ...r,
          ...(targetName !== undefined ? { targetName } : {}),
          detail: r.detail ? (JSON.parse(r.detail) as unknown) : null,
        };
      });
    },
  );
}
