import { z } from 'zod';
import { User, UserCreateBody, UserUpdateBody } from '@vdi/shared';
import { isUniqueViolation } from '../../store/unique-violation.js';
import { createUser, userView } from '../../auth/users.js';
import { hashPassword } from '../../auth/passwords.js';
import { actorOf } from '../actor.js';
import { HttpError } from '../http-error.js';
import { IdParam, type AdminScope } from './scope.js';

/** Accounts: list, create, change (role, disabled, password), delete. */
export function adminUserRoutes(admin: AdminScope): void {
  const { db, clock, broker, onUserDisabled } = admin.deps;

  const getUser = async (id: string) => {
    const row = await db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new HttpError(404, 'NOT_FOUND', 'no such user');
    return row;
  };

  admin.route(
    {
      method: 'get',
      path: '/users',
      summary: 'List users',
      response: z.array(User),
    },
    async () => {
      const rows = await db.selectFrom('users').selectAll().orderBy('username').execute();
      return Promise.all(rows.map((r) => userView(db, r)));
    },
  );

  admin.route(
    {
      method: 'post',
      path: '/users',
      summary: 'Create a user',
      body: UserCreateBody,
      response: User,
    },
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
      await admin.audit(req, 'user.create', row.id, { username: b.username, role: b.role });
      res.status(201);
      return userView(db, row);
    },
  );

  admin.route(
    {
      method: 'patch',
      path: '/users/:id',
      summary: 'Change role, disable/enable, reset password',
      body: UserUpdateBody,
      response: User,
    },
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
      await admin.audit(req, b.password !== undefined ? 'user.password-reset' : 'user.update', id, {
        ...b,
        password: b.password ? '***' : undefined,
      });
      if (b.disabled === true || b.password !== undefined || b.role !== undefined)
        await onUserDisabled(id);
      return userView(db, { ...row, ...set });
    },
  );

  admin.route(
    {
      method: 'delete',
      path: '/users/:id',
      summary: 'Delete a user (their sessions are logged off)',
    },
    async (req) => {
      const { id } = IdParam.parse(req.params);
      const row = await getUser(id);
      if (id === req.user!.id)
        throw new HttpError(409, 'SELF_LOCKOUT', 'you cannot delete your own account');
      await broker.removeUser(row, actorOf(req), () => onUserDisabled(id));
    },
  );
}
