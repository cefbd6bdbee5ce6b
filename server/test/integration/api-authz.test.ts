import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deletePoolsAndClose,
  expectNoXvncLeft,
  PARKED_BROKER,
  startXvncServer,
} from '../helpers/desktops.js';
import { Api, ADMIN, tempDirs, testConfig, until, type TestServer } from '../helpers/server.js';
import { connected, Viewers, type ViewerSocket } from '../helpers/viewer.js';
import type { Method as HttpMethod } from '../helpers/answers.js';

/*
 * Authorization through the real HTTP API, with real Xvnc desktops behind the sessions:
 * every admin route (taken from /api/openapi.json, so a new route is covered without editing
 * this file) refuses a signed-in user with 403 and no session with 401, and acts on nothing;
 * every state-changing route needs the CSRF header; entitlements (direct and through groups)
 * decide which pools a user sees and may connect to; users cannot touch each other's
 * sessions; disabling an account signs it out.
 */

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
interface Op {
  method: Method;
  path: string;
  tag: string;
}

const dirs = tempDirs('vdiaz');

/** this file's own range of X displays (see xvncProvider) */
const FIRST_DISPLAY = 480;
let ts: TestServer;
let admin: Api;
let alice: { api: Api; id: string };
let bob: { api: Api; id: string };
let poolId: string;
let secretPoolId: string;
let bobSession: { sessionId: string; desktopId: string };
let ops: Op[];
const viewers = new Viewers();
const pools: string[] = [];

async function newUser(
  name: string,
  role: 'user' | 'admin' = 'user',
): Promise<{ api: Api; id: string; password: string }> {
  const password = `${name}-password-1`;
  const r = await admin.post('/api/admin/users', { username: name, password, role });
  expect(r.status).toBe(201);
  return { api: await new Api(ts.url).login(name, password), id: r.body.id, password };
}

async function entitle(
  pool: string,
  principalType: 'user' | 'group',
  principalId: string,
): Promise<string> {
  const r = await admin.post('/api/admin/entitlements', {
    poolId: pool,
    principalType,
    principalId,
  });
  expect(r.status).toBe(201);
  return r.body.id;
}

async function createPool(name: string): Promise<string> {
  const r = await admin.post('/api/admin/pools', {
    name,
    provider: 'xvnc',
    template: { width: 640, height: 480 },
    maxSize: 3,
  });
  expect(r.status).toBe(201);
  pools.push(r.body.id);
  return r.body.id;
}

async function socketFor(api: Api): Promise<ViewerSocket> {
  const socket = viewers.open(ts.url, { cookie: api.cookie });
  await connected(socket);
  return socket;
}

/** a raw request: no CSRF header unless given */
async function raw(
  method: string,
  p: string,
  cookie: string,
  headers: Record<string, string> = {},
  body?: unknown,
) {
  const r = await fetch(ts.url + p, {
    method,
    headers: {
      ...(cookie ? { cookie } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let parsed: { error?: { code: string; message: string } } | undefined;
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    parsed = undefined;
  }
  return { status: r.status, body: parsed };
}

beforeAll(async () => {
  ts = await startXvncServer(testConfig(PARKED_BROKER, dirs), FIRST_DISPLAY);
  admin = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
  alice = await newUser('alice');
  bob = await newUser('bob');
  poolId = await createPool('shared');
  secretPoolId = await createPool('secret');
  await entitle(poolId, 'user', alice.id);
  await entitle(poolId, 'user', bob.id);
  const c = await bob.api.post(`/api/pools/${poolId}/connect`);
  expect(c.status).toBe(200);
  bobSession = c.body;

  const spec = await admin.get('/api/openapi.json');
  expect(spec.status).toBe(200);
  ops = [];
  for (const [p, byMethod] of Object.entries(
    (spec.body as { paths: Record<string, Record<string, { tags: string[] }>> }).paths,
  )) {
    for (const [method, op] of Object.entries(byMethod))
      ops.push({ method: method as Method, path: p, tag: op.tags[0]! });
  }
});

afterAll(async () => {
  try {
    viewers.closeAll();
    if (ts) await deletePoolsAndClose(ts, admin, pools);
  } finally {
    expectNoXvncLeft(dirs);
  }
});

describe('admin routes', () => {
  /** real ids, so a route with a missing guard would act on something and the test would see it */
  async function realIds(): Promise<Record<string, string>> {
    const g = await admin.post('/api/admin/groups', { name: `g-${Date.now()}` });
    const ents = await admin.get('/api/admin/entitlements');
    return {
      users: bob.id,
      groups: g.body.id,
      pools: poolId,
      entitlements: (ents.body as { id: string }[])[0]!.id,
      sessions: bobSession.sessionId,
      desktops: bobSession.desktopId,
    };
  }

  function fill(p: string, ids: Record<string, string>): string {
    return p
      .replace(
        /\/(\w+)\/\{(\w+)\}/g,
        (_m, coll: string, param: string) =>
          `/${coll}/${param === 'name' ? 'snap1' : (ids[coll] ?? 'no-such-id')}`,
      )
      .replace(/\{name\}/g, 'snap1');
  }

  it('the OpenAPI document lists the admin routes, and exactly the /api/admin ones are tagged admin', () => {
    const adminOps = ops.filter((o) => o.tag === 'admin');
    expect(adminOps.length).toBeGreaterThanOrEqual(25);
    for (const o of ops)
      expect(o.tag === 'admin', `${o.method} ${o.path}`).toBe(o.path.startsWith('/api/admin/'));
    // the ones the issue names are among them
    for (const want of [
      'post /api/admin/users',
      'patch /api/admin/pools/{id}',
      'delete /api/admin/pools/{id}',
      'post /api/admin/entitlements',
      'post /api/admin/sessions/{id}/logoff',
      'get /api/admin/audit',
    ]) {
      expect(adminOps.map((o) => `${o.method} ${o.path}`)).toContain(want);
    }
  });

  it('every admin route answers 403 to a signed-in user and 401 without a session, and changes nothing', async () => {
    const ids = await realIds();
    const auditBefore = (await admin.get('/api/admin/audit?limit=1000')).body.length;
    const anonymous = new Api(ts.url);
    const adminOps = ops.filter((o) => o.tag === 'admin');
    for (const o of adminOps) {
      const p = fill(o.path, ids);
      const body = o.method === 'get' || o.method === 'delete' ? undefined : {};
      const asUser = await alice.api.call(
        o.method.toUpperCase() as HttpMethod,
        p + (o.method === 'delete' ? '?force=true' : ''),
        body,
      );
      expect([asUser.status, asUser.error?.code], `${o.method} ${p} as a user`).toEqual([
        403,
        'FORBIDDEN',
      ]);
      const asNobody = await anonymous.call(o.method.toUpperCase() as HttpMethod, p, body);
      expect([asNobody.status, asNobody.error?.code], `${o.method} ${p} without a session`).toEqual(
        [401, 'UNAUTHENTICATED'],
      );
    }
    // the admin reaches every one of those routes (none is a dead path in the document)
    for (const o of adminOps.filter((x) => x.method === 'get')) {
      const r = await admin.get(fill(o.path, ids));
      expect([401, 403], `${o.method} ${o.path} as admin`).not.toContain(r.status);
      expect(r.error?.message ?? '', `${o.method} ${o.path} as admin`).not.toBe(
        'no such API route',
      );
    }
    // nothing happened: Bob, his session and desktop, the pool, the group and the grants are all there
    expect((await admin.get('/api/admin/users')).body.map((u: { id: string }) => u.id)).toContain(
      bob.id,
    );
    expect((await ts.server.broker.session(bobSession.sessionId))?.state).not.toBe('ended');
    expect((await admin.get(`/api/admin/pools/${poolId}`)).body.draining).toBe(false);
    expect((await admin.get('/api/admin/groups')).body.map((g: { id: string }) => g.id)).toContain(
      ids.groups,
    );
    expect(
      (await admin.get('/api/admin/entitlements')).body.map((e: { id: string }) => e.id),
    ).toContain(ids.entitlements);
    const auditAfter = (await admin.get('/api/admin/audit?limit=1000')).body as {
      actor: string;
      action: string;
    }[];
    expect(auditAfter.length).toBe(auditBefore);
    expect(auditAfter.filter((e) => e.actor === 'alice' && !e.action.startsWith('auth.'))).toEqual(
      [],
    );
  });

  it('a user cannot create an admin account or grant themselves a pool, even with valid bodies', async () => {
    const mk = await alice.api.post('/api/admin/users', {
      username: 'mallory',
      password: 'mallory-password-1',
      role: 'admin',
    });
    expect(mk.status).toBe(403);
    const self = await alice.api.patch(`/api/admin/users/${alice.id}`, { role: 'admin' });
    expect(self.status).toBe(403);
    const grant = await alice.api.post('/api/admin/entitlements', {
      poolId: secretPoolId,
      principalType: 'user',
      principalId: alice.id,
    });
    expect(grant.status).toBe(403);
    const users = (await admin.get('/api/admin/users')).body as {
      username: string;
      role: string;
      id: string;
    }[];
    expect(users.map((u) => u.username)).not.toContain('mallory');
    expect(users.find((u) => u.id === alice.id)?.role).toBe('user');
    expect(
      (await alice.api.get('/api/desktops')).body.map((p: { poolId: string }) => p.poolId),
    ).toEqual([poolId]);
  });
});

describe('CSRF', () => {
  it('every state-changing route refuses a call without X-Requested-With: vdi, even from an admin', async () => {
    const writes = ops.filter((o) => o.method !== 'get');
    expect(writes.length).toBeGreaterThan(15);
    for (const o of writes) {
      const p = o.path
        .replace(/\{poolId\}/, poolId)
        .replace(/\{id\}/, bobSession.sessionId)
        .replace(/\{name\}/, 'snap1');
      for (const headers of [{}, { 'x-requested-with': 'XMLHttpRequest' }] as Record<
        string,
        string
      >[]) {
        const r = await raw(
          o.method.toUpperCase(),
          p,
          admin.cookie,
          headers,
          o.method === 'delete' ? undefined : {},
        );
        expect(
          [r.status, r.body?.error?.code],
          `${o.method} ${p} ${JSON.stringify(headers)}`,
        ).toEqual([403, 'CSRF']);
      }
    }
    // nothing was done: Bob's session is live, the admin is still signed in
    expect((await ts.server.broker.session(bobSession.sessionId))?.state).not.toBe('ended');
    expect((await admin.get('/api/auth/me')).status).toBe(200);
  });

  it('a cross-site style delete of a user is refused and the user stays', async () => {
    const victim = await newUser('victim');
    const r = await raw('DELETE', `/api/admin/users/${victim.id}`, admin.cookie);
    expect(r.status).toBe(403);
    expect((await admin.get('/api/admin/users')).body.map((u: { id: string }) => u.id)).toContain(
      victim.id,
    );
    expect((await victim.api.get('/api/auth/me')).status).toBe(200);
  });
});

describe('entitlements and sessions of others', () => {
  it('a user cannot connect to a pool they are not entitled to, and does not see it', async () => {
    const before = await ts.server.store.db
      .selectFrom('desktops')
      .select('id')
      .where('pool_id', '=', secretPoolId)
      .execute();
    const r = await alice.api.post(`/api/pools/${secretPoolId}/connect`);
    expect(r.status).toBe(403);
    expect(r.error?.code).toBe('NOT_ENTITLED');
    expect(
      await ts.server.store.db
        .selectFrom('desktops')
        .select('id')
        .where('pool_id', '=', secretPoolId)
        .execute(),
    ).toEqual(before);
    expect(
      await ts.server.store.db
        .selectFrom('sessions')
        .select('id')
        .where('user_id', '=', alice.id)
        .where('pool_id', '=', secretPoolId)
        .execute(),
    ).toEqual([]);
    const mine = await alice.api.get('/api/desktops');
    expect(mine.body.map((p: { poolId: string }) => p.poolId)).not.toContain(secretPoolId);
  });

  it("a user sees only their own sessions and cannot log off, disconnect or attach to someone else's", async () => {
    const mine = await alice.api.get('/api/desktops');
    const all = mine.body.flatMap(
      (p: { sessions: { id: string; userId: string }[] }) => p.sessions,
    );
    expect(all.map((s: { id: string }) => s.id)).not.toContain(bobSession.sessionId);
    expect(all.every((s: { userId: string }) => s.userId === alice.id)).toBe(true);
    // Bob sees his
    const his = await bob.api.get('/api/desktops');
    expect(
      his.body.flatMap((p: { sessions: { id: string }[] }) => p.sessions.map((s) => s.id)),
    ).toEqual([bobSession.sessionId]);

    for (const action of ['logoff', 'disconnect']) {
      const r = await alice.api.post(`/api/sessions/${bobSession.sessionId}/${action}`);
      expect([r.status, r.error?.code], action).toEqual([404, 'SESSION_NOT_FOUND']);
    }
    expect((await ts.server.broker.session(bobSession.sessionId))?.state).not.toBe('ended');

    // nor through the viewer socket: not as a viewer, not as a shadow
    const s = await socketFor(alice.api);
    const asViewer = await s
      .timeout(10_000)
      .emitWithAck('attach', { sessionId: bobSession.sessionId });
    expect(asViewer).toMatchObject({ ok: false, code: 'FORBIDDEN' });
    const asShadow = await s
      .timeout(10_000)
      .emitWithAck('attach', { sessionId: bobSession.sessionId, shadow: true });
    expect(asShadow).toMatchObject({ ok: false, code: 'FORBIDDEN' });
    // while Bob can attach to his own
    const b = await socketFor(bob.api);
    expect(
      await b.timeout(15_000).emitWithAck('attach', { sessionId: bobSession.sessionId }),
    ).toMatchObject({ ok: true, desktopId: bobSession.desktopId });
    b.close();
  });

  it('entitlement through a group works; revoking it or leaving the group hides the pool', async () => {
    const carol = await newUser('carol');
    const groupPool = await createPool('group-pool');
    const g = await admin.post('/api/admin/groups', { name: 'staff' });
    expect(g.status).toBe(201);
    expect(
      (await admin.put(`/api/admin/groups/${g.body.id}/members`, { userIds: [carol.id] })).status,
    ).toBe(200);
    const visible = async () =>
      ((await carol.api.get('/api/desktops')).body as { poolId: string }[]).map((p) => p.poolId);
    expect(await visible()).not.toContain(groupPool);
    expect((await carol.api.post(`/api/pools/${groupPool}/connect`)).status).toBe(403);

    const ent = await entitle(groupPool, 'group', g.body.id);
    expect(await visible()).toContain(groupPool);
    const c = await carol.api.post(`/api/pools/${groupPool}/connect`);
    expect(c.status).toBe(200);
    expect((await carol.api.post(`/api/sessions/${c.body.sessionId}/logoff`)).status).toBe(204);

    expect((await admin.del(`/api/admin/entitlements/${ent}`)).status).toBe(204);
    expect(await visible()).not.toContain(groupPool);
    const refused = await carol.api.post(`/api/pools/${groupPool}/connect`);
    expect([refused.status, refused.error?.code]).toEqual([403, 'NOT_ENTITLED']);

    // granted again, then Carol leaves the group
    await entitle(groupPool, 'group', g.body.id);
    expect(await visible()).toContain(groupPool);
    expect(
      (await admin.put(`/api/admin/groups/${g.body.id}/members`, { userIds: [] })).status,
    ).toBe(200);
    expect(await visible()).not.toContain(groupPool);
    expect((await carol.api.post(`/api/pools/${groupPool}/connect`)).status).toBe(403);
  });
});

describe('disabling a user', () => {
  it('signs them out at once (cookie and socket), refuses sign-in, and re-enabling needs a new sign-in', async () => {
    const dave = await newUser('dave');
    await entitle(poolId, 'user', dave.id);
    const oldCookie = dave.api.cookie;
    expect((await dave.api.get('/api/auth/me')).status).toBe(200);
    const c = await dave.api.post(`/api/pools/${poolId}/connect`);
    expect(c.status).toBe(200);
    const s = await socketFor(dave.api);
    expect(
      await s.timeout(15_000).emitWithAck('attach', { sessionId: c.body.sessionId }),
    ).toMatchObject({ ok: true });
    const closed = new Promise<void>((resolve) => s.once('disconnect', () => resolve()));

    const r = await admin.patch(`/api/admin/users/${dave.id}`, { disabled: true });
    expect(r.status).toBe(200);
    expect(r.body.disabled).toBe(true);
    const me = await dave.api.get('/api/auth/me');
    expect([me.status, me.error?.code]).toEqual([401, 'UNAUTHENTICATED']);
    expect((await dave.api.post(`/api/pools/${poolId}/connect`)).status).toBe(401);
    await closed;
    // the desktop session itself is kept (an admin decides what happens to it), just not reachable
    await until(
      async () => (await ts.server.broker.session(c.body.sessionId))?.state === 'disconnected',
      10_000,
      'the session to be disconnected',
    );

    const again = await new Api(ts.url).post('/api/auth/login', {
      username: 'dave',
      password: dave.password,
    });
    // the right password learns that the account is disabled (a wrong one learns nothing)
    expect([again.status, again.error?.code]).toEqual([403, 'ACCOUNT_DISABLED']);
    const wrong = await new Api(ts.url).post('/api/auth/login', {
      username: 'dave',
      password: 'not-' + dave.password,
    });
    expect([wrong.status, wrong.error?.code]).toEqual([401, 'BAD_CREDENTIALS']);
    // and a socket with the old cookie is refused
    const refused = viewers.open(ts.url, { cookie: oldCookie });
    const err = await new Promise<Error>((resolve) => refused.once('connect_error', resolve));
    expect(err.message).toMatch(/unauthorized/);

    expect((await admin.patch(`/api/admin/users/${dave.id}`, { disabled: false })).status).toBe(
      200,
    );
    const stale = new Api(ts.url);
    stale.cookie = oldCookie;
    expect((await stale.get('/api/auth/me')).status).toBe(401);
    const fresh = await new Api(ts.url).login('dave', dave.password);
    expect((await fresh.get('/api/auth/me')).body.username).toBe('dave');
    // back in, Dave resumes his session
    const back = await fresh.post(`/api/pools/${poolId}/connect`);
    expect(back.body).toEqual({
      sessionId: c.body.sessionId,
      desktopId: c.body.desktopId,
      resumed: true,
    });
  });
});
