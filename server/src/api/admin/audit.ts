import { z } from 'zod';
import { sql, type SqlBool } from 'kysely';
import { AuditEntry, AuditQuery } from '@vdi/shared';
import type { AdminScope } from './scope.js';

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
      return rows.map((r) => ({
        ...r,
        detail: r.detail ? (JSON.parse(r.detail) as unknown) : null,
      }));
    },
  );
}
