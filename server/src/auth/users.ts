import { randomBytes, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { User } from '@vdi/shared';
import type { Db } from '../store/db.js';
import type { UserRow } from '../store/schema.js';
import type { Clock } from '../clock.js';
import { hashPassword } from './passwords.js';

export async function userView(db: Db, row: UserRow): Promise<User> {
  const groups = await db
    .selectFrom('group_members as m')
    .innerJoin('groups as g', 'g.id', 'm.group_id')
    .select('g.id')
    .where('m.user_id', '=', row.id)
    .execute();
  return {
    id: row.id,
    username: row.username,
    displayName: row.display_name,
    role: row.role,
    disabled: row.disabled === 1,
    createdAt: row.created_at,
    groups: groups.map((g) => g.id),
  };
}

export async function createUser(
  db: Db,
  clock: Clock,
  u: { username: string; password: string; role: 'user' | 'admin'; displayName?: string },
): Promise<UserRow> {
  const row: UserRow = {
    id: randomUUID(),
    username: u.username,
    display_name: u.displayName ?? '',
    password_hash: await hashPassword(u.password),
    role: u.role,
    disabled: 0,
    created_at: new Date(clock.now()).toISOString(),
  };
  await db.insertInto('users').values(row).execute();
  return row;
}

/**
 * First run: create the admin account. Takes VDI_ADMIN_USER / VDI_ADMIN_PASSWORD, or makes a
 * random password and prints it once (it is stored only as a hash).
 */
export async function ensureAdmin(
  db: Db,
  clock: Clock,
  log: Logger,
  opts: { username: string; password: string | undefined },
): Promise<UserRow | undefined> {
  const anyAdmin = await db
    .selectFrom('users')
    .select('id')
    .where('role', '=', 'admin')
    .executeTakeFirst();
  if (anyAdmin) return undefined;
  const password = opts.password ?? randomBytes(12).toString('base64url');
  const row = await createUser(db, clock, {
    username: opts.username,
    password,
    role: 'admin',
    displayName: 'Administrator',
  });
  if (!opts.password) {
    // printed once on purpose: this is the only time the password exists in clear
    process.stdout.write(
      `\n  First run: admin account created\n    username: ${opts.username}\n    password: ${password}\n  (set VDI_ADMIN_PASSWORD to choose it; change it in the admin console)\n\n`,
    );
  }
  log.info({ username: opts.username }, 'admin account created');
  return row;
}
