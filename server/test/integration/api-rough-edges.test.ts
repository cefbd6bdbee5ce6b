import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { USERNAME_MAX } from '@vdi/shared';
import { Api, ADMIN, startServer, testConfig, type TestServer } from '../helpers/server.js';

/*
 * The rough edges a new user found (issue 13), through the real REST API: blank names are
 * refused, the username rule is one rule (letters of any script, at most 64, never cut),
 * a disabled account is told so, audit entries name what they are about.
 */

let ts: TestServer;
let admin: Api;

beforeAll(async () => {
  ts = await startServer(testConfig({ DEFAULT_POOL: 'false' }));
  admin = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
});

afterAll(async () => {
  await ts?.close();
});

describe('names', () => {
  it('whitespace-only names of groups, pools and users are refused with 400, naming the field', async () => {
    const g = await admin.post('/api/admin/groups', { name: '   ' });
    expect(g.status).toBe(400);
    expect(g.error?.details).toContainEqual({
      path: 'name',
      message: 'must not be empty or only spaces',
    });
    const p = await admin.post('/api/admin/pools', {
      name: ' \t ',
      provider: 'xvnc',
      template: {},
    });
    expect(p.status).toBe(400);
    expect(JSON.stringify(p.error?.details)).toContain('"path":"name"');
    const u = await admin.post('/api/admin/users', { username: '   ', password: 'password-123' });
    expect(u.status).toBe(400);

    // names keep no outer spaces; an edit to blank is refused too
    const ok = await admin.post('/api/admin/groups', { name: '  Finance  ' });
    expect(ok.status).toBe(201);
    expect((ok.body as { name: string }).name).toBe('Finance');
    const pool = await admin.post('/api/admin/pools', {
      name: 'Rough pool',
      provider: 'xvnc',
      template: {},
    });
    expect(pool.status).toBe(201);
    const edit = await admin.patch(`/api/admin/pools/${(pool.body as { id: string }).id}`, {
      name: '  ',
    });
    expect(edit.status).toBe(400);
  });

  it('usernames: letters of any script are accepted, 65 characters are refused (never cut), spaces refused', async () => {
    for (const username of ['Zoë', 'Łukasz.K', '山田', 'ana-maría@corp']) {
      const r = await admin.post('/api/admin/users', { username, password: 'password-123' });
      expect(r.status, `${username}: ${JSON.stringify(r.body)}`).toBe(201);
      expect((r.body as { username: string }).username).toBe(username);
    }
    const zoe = await new Api(ts.url).post('/api/auth/login', {
      username: 'Zoë',
      password: 'password-123',
    });
    expect(zoe.status).toBe(200);

    const long = 'a'.repeat(USERNAME_MAX + 1);
    const r = await admin.post('/api/admin/users', { username: long, password: 'password-123' });
    expect(r.status).toBe(400);
    expect(r.error?.details).toContainEqual({
      path: 'username',
      message: `at most ${USERNAME_MAX} characters`,
    });
    const exact = await admin.post('/api/admin/users', {
      username: 'b'.repeat(USERNAME_MAX),
      password: 'password-123',
    });
    expect(exact.status).toBe(201);
    const spaced = await admin.post('/api/admin/users', {
      username: 'two words',
      password: 'password-123',
    });
    expect(spaced.status).toBe(400);
  });
});

describe('accounts', () => {
  it('a disabled account is told so (with the right password only); audit entries name the user', async () => {
    const u = await admin.post('/api/admin/users', {
      username: 'dora',
      password: 'dora-password-1',
    });
    expect(u.status).toBe(201);
    const id = (u.body as { id: string }).id;
    expect((await admin.patch(`/api/admin/users/${id}`, { disabled: true })).status).toBe(200);

    const right = await new Api(ts.url).post('/api/auth/login', {
      username: 'dora',
      password: 'dora-password-1',
    });
    expect(right.status).toBe(403);
    expect(right.error).toMatchObject({
      code: 'ACCOUNT_DISABLED',
      message: 'This account is disabled. Ask an administrator to enable it.',
    });
    // a wrong password learns nothing about the account
    const wrong = await new Api(ts.url).post('/api/auth/login', {
      username: 'dora',
      password: 'not-her-password',
    });
    expect(wrong.status).toBe(401);
    expect(wrong.error?.code).toBe('BAD_CREDENTIALS');

    const audit = await admin.get(`/api/admin/audit?target=${id}`);
    expect(audit.status).toBe(200);
    const entries = audit.body as Array<{ target: string; targetName?: string }>;
    expect(entries.length).toBeGreaterThan(0);
    for (const e of entries) expect(e.targetName).toBe('dora');
  });
});
