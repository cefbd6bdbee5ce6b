/**
 * REST answers under races and broken desktops (issue 8, "Hostile input", REST): creates of
 * the same name fired at once get one 201 and 409s with a message, never a 500 from the
 * database's UNIQUE constraint, on SQLite and on PostgreSQL both; the thumbnail of a desktop
 * that is gone is a 404 and of one that does not answer a 503, each with a reason.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN,
  Api,
  tempDirs,
  testConfig,
  until,
  type ApiAnswer,
  type TestServer,
} from '../helpers/server.js';
import {
  alive,
  desktopHandle,
  expectNoXvncLeft,
  PARKED_BROKER,
  startXvncServer,
} from '../helpers/desktops.js';

const PG_ADMIN = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const FIRST_DISPLAY = 620;
const AT_ONCE = 8;

/** fires `n` copies of a request together and resolves with every answer */
function together<T>(n: number, fn: (i: number) => Promise<ApiAnswer<T>>): Promise<ApiAnswer<T>[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => fn(i)));
}

function oneWinner(answers: ApiAnswer<unknown>[], code: string, message: RegExp): void {
  const statuses = answers.map((a) => a.status).sort();
  expect(statuses, JSON.stringify(answers.map((a) => a.body))).toEqual([
    201,
    ...Array<number>(answers.length - 1).fill(409),
  ]);
  for (const a of answers.filter((x) => x.status === 409)) {
    expect(a.error?.code).toBe(code);
    expect(a.error?.message).toMatch(message);
  }
}

function conflictSuite(store: 'SQLite' | 'PostgreSQL') {
  describe(`simultaneous creates of one name on ${store}`, () => {
    const dbName = `vdi_conflicts_${randomBytes(4).toString('hex')}`;
    const dirs = tempDirs('vdicf');
    let ts: TestServer;
    let admin: Api;

    beforeAll(async () => {
      const env: Record<string, string> = { ...PARKED_BROKER };
      if (store === 'PostgreSQL') {
        const c = new pg.Client({ connectionString: PG_ADMIN });
        await c.connect();
        await c.query(`CREATE DATABASE ${dbName}`);
        await c.end();
        env.DATABASE_URL = PG_ADMIN.replace(/\/[^/]*$/, `/${dbName}`);
      }
      ts = await startXvncServer(testConfig(env, dirs), FIRST_DISPLAY);
      admin = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
      expect(ts.server.store.dialect).toBe(store === 'SQLite' ? 'sqlite' : 'postgres');
    });

    afterAll(async () => {
      await ts?.close();
      if (store === 'PostgreSQL') {
        const c = new pg.Client({ connectionString: PG_ADMIN });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
        await c.end();
      }
      expectNoXvncLeft(dirs);
    });

    it(`${AT_ONCE} creates of the same username: one 201, the rest 409 NAME_TAKEN`, async () => {
      const answers = await together(AT_ONCE, (i) =>
        admin.post('/api/admin/users', { username: 'twin', password: `twin-password-${i}` }),
      );
      oneWinner(answers, 'NAME_TAKEN', /user "twin" exists already/);
      const users = (await admin.get('/api/admin/users')).body as { username: string }[];
      expect(users.filter((u) => u.username === 'twin')).toHaveLength(1);
      // the winner's password is the one that works
      const winner = answers.findIndex((a) => a.status === 201);
      await new Api(ts.url).login('twin', `twin-password-${winner}`);
    });

    it(`${AT_ONCE} creates of the same group: one 201, the rest 409 NAME_TAKEN`, async () => {
      const answers = await together(AT_ONCE, () =>
        admin.post('/api/admin/groups', { name: 'twins' }),
      );
      oneWinner(answers, 'NAME_TAKEN', /group "twins" exists already/);
      const groups = (await admin.get('/api/admin/groups')).body as { name: string }[];
      expect(groups.filter((g) => g.name === 'twins')).toHaveLength(1);
    });

    it(`${AT_ONCE} creates of the same pool: one 201, the rest 409 NAME_TAKEN`, async () => {
      const answers = await together(AT_ONCE, () =>
        admin.post('/api/admin/pools', { name: 'twin-pool', provider: 'xvnc', maxSize: 1 }),
      );
      oneWinner(answers, 'NAME_TAKEN', /pool named "twin-pool" exists already/);
      const pools = (await admin.get('/api/admin/pools')).body as { id: string; name: string }[];
      const mine = pools.filter((p) => p.name === 'twin-pool');
      expect(mine).toHaveLength(1);

      // and the same grant at once: granting is idempotent, so every answer names one grant
      const users = (await admin.get('/api/admin/users')).body as {
        id: string;
        username: string;
      }[];
      const twin = users.find((u) => u.username === 'twin')!;
      const grants = await together(AT_ONCE, () =>
        admin.post('/api/admin/entitlements', {
          poolId: mine[0]!.id,
          principalType: 'user',
          principalId: twin.id,
        }),
      );
      for (const g of grants) expect([200, 201]).toContain(g.status);
      expect(new Set(grants.map((g) => g.body.id)).size).toBe(1);
      expect((await admin.del(`/api/admin/pools/${mine[0]!.id}?force=true`)).status).toBe(204);
    });
  });
}

conflictSuite('SQLite');
conflictSuite('PostgreSQL');

describe('the thumbnail of a desktop that is gone or does not answer', () => {
  const dirs = tempDirs('vdith');
  let ts: TestServer;
  let admin: Api;
  let poolId = '';

  const startDesktop = async (): Promise<{ sessionId: string; desktopId: string }> => {
    const c = await admin.post(`/api/pools/${poolId}/connect`);
    expect(c.status, JSON.stringify(c.body)).toBe(200);
    return { sessionId: c.body.sessionId, desktopId: c.body.desktopId };
  };

  beforeAll(async () => {
    ts = await startXvncServer(testConfig(PARKED_BROKER, dirs), FIRST_DISPLAY + 10);
    admin = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
    const p = await admin.post('/api/admin/pools', {
      name: 'thumbs',
      provider: 'xvnc',
      maxSize: 2,
      template: { width: 320, height: 240 },
    });
    expect(p.status, JSON.stringify(p.body)).toBe(201);
    poolId = p.body.id;
    const me = (await admin.get('/api/auth/me')).body as { id: string };
    const g = await admin.post('/api/admin/entitlements', {
      poolId,
      principalType: 'user',
      principalId: me.id,
    });
    expect(g.status).toBe(201);
  });

  afterAll(async () => {
    if (ts) {
      await ts.server.broker.tick();
      await admin.del(`/api/admin/pools/${poolId}?force=true`);
      await ts.close();
    }
    expectNoXvncLeft(dirs);
  });

  it('a running desktop gives a JPEG; an unknown id is a 404', async () => {
    const { desktopId, sessionId } = await startDesktop();
    const r = await fetch(`${ts.url}/api/admin/desktops/${desktopId}/thumbnail`, {
      headers: { cookie: admin.cookie },
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('image/jpeg');
    const jpeg = Buffer.from(await r.arrayBuffer());
    expect(jpeg.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
    const none = await admin.get('/api/admin/desktops/no-such-desktop/thumbnail');
    expect(none.status).toBe(404);
    expect(none.error?.code).toBe('NOT_FOUND');
    await admin.post(`/api/sessions/${sessionId}/logoff`);
  });

  it('a desktop whose X server was killed: 404 DESKTOP_GONE with the reason', async () => {
    const { desktopId, sessionId } = await startDesktop();
    const h = await desktopHandle(ts, desktopId);
    process.kill(h.xvncPid, 'SIGKILL');
    await until(() => !alive(h.xvncPid), 10_000, 'Xvnc gone');
    const r = await admin.get(`/api/admin/desktops/${desktopId}/thumbnail`);
    // the broker may have cleaned the record up already (404 NOT_FOUND); either way it is gone
    expect(r.status, JSON.stringify(r.body)).toBe(404);
    expect(['DESKTOP_GONE', 'NOT_FOUND']).toContain(r.error?.code);
    if (r.error?.code === 'DESKTOP_GONE')
      expect(r.error?.message).toMatch(/no longer running \(.+\)/);
    // the failure made the broker look: the session ends with the reason
    await until(
      async () => (await ts.server.broker.session(sessionId))?.state === 'ended',
      15_000,
      'session ended after the desktop was found dead',
    );
  });

  it('a desktop that does not answer (Xvnc stopped): 503 DESKTOP_UNREACHABLE, then 200 once it runs', async () => {
    const { desktopId, sessionId } = await startDesktop();
    const h = await desktopHandle(ts, desktopId);
    process.kill(h.xvncPid, 'SIGSTOP');
    try {
      const r = await admin.get(`/api/admin/desktops/${desktopId}/thumbnail`);
      expect(r.status, JSON.stringify(r.body)).toBe(503);
      expect(r.error?.code).toBe('DESKTOP_UNREACHABLE');
      expect(r.error?.message).toMatch(/could not be reached: .+/);
    } finally {
      process.kill(h.xvncPid, 'SIGCONT');
    }
    // the server is fine and so is the desktop once it runs again
    expect((await fetch(`${ts.url}/healthz`)).status).toBe(200);
    await until(
      async () =>
        (await fetch(`${ts.url}/api/admin/desktops/${desktopId}/thumbnail`, {
          headers: { cookie: admin.cookie },
        }).then((x) => x.status)) === 200,
      20_000,
      'thumbnail after SIGCONT',
    );
    await admin.post(`/api/sessions/${sessionId}/logoff`);
  });
});
