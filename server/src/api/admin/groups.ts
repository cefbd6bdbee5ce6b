import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { Group, GroupCreateBody, GroupMembersBody } from '@vdi/shared';
import { isUniqueViolation } from '../../store/unique-violation.js';
import { HttpError } from '../http-error.js';
import { IdParam, type AdminScope } from './scope.js';

/** Groups of users (entitlements name them): list, create, set members, delete. */
export function adminGroupRoutes(admin: AdminScope): void {
  const { db, clock } = admin.deps;

  const groupView = async (g: { id: string; name: string; description: string }) => ({
    ...g,
    members: (
      await db.selectFrom('group_members').select('user_id').where('group_id', '=', g.id).execute()
    ).map((m) => m.user_id),
  });

  admin.route(
    {
      method: 'get',
      path: '/groups',
      summary: 'List groups',
      response: z.array(Group),
    },
    async () => {
      const rows = await db
        .selectFrom('groups')
        .select(['id', 'name', 'description'])
        .orderBy('name')
        .execute();
      return Promise.all(rows.map(groupView));
    },
  );

  admin.route(
    {
      method: 'post',
      path: '/groups',
      summary: 'Create a group',
      body: GroupCreateBody,
      response: Group,
    },
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
      await admin.audit(req, 'group.create', g.id, { name: g.name });
      res.status(201);
      return groupView(g);
    },
  );

  admin.route(
    {
      method: 'put',
      path: '/groups/:id/members',
      summary: 'Set the members of a group',
      body: GroupMembersBody,
      response: Group,
    },
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
      await admin.audit(req, 'group.members', id, { userIds: ids });
      return groupView(g);
    },
  );

  admin.route({ method: 'delete', path: '/groups/:id', summary: 'Delete a group' }, async (req) => {
    const { id } = IdParam.parse(req.params);
    await db
      .deleteFrom('entitlements')
      .where('principal_type', '=', 'group')
      .where('principal_id', '=', id)
      .execute();
    await db.deleteFrom('group_members').where('group_id', '=', id).execute();
    const r = await db.deleteFrom('groups').where('id', '=', id).executeTakeFirst();
    if (!Number(r.numDeletedRows)) throw new HttpError(404, 'NOT_FOUND', 'no such group');
    await admin.audit(req, 'group.delete', id);
  });
}
