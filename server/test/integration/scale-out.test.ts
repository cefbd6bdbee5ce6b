/**
 * The several-node mode: PostgreSQL as the store and the Socket.IO Redis adapter, with two
 * gateway nodes sharing them. A session started through one node is resumed through the
 * other, and an admin message sent through one node reaches a viewer on the other.
 * Needs the local PostgreSQL (trust auth) and Redis this kind of machine runs.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN,
  Api,
  startServer,
  tempDirs,
  testConfig,
  until,
  type TestServer,
} from '../helpers/server.js';
import { attach, connected, receiveFrames, Viewers } from '../helpers/viewer.js';

const PG_ADMIN = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('several nodes on PostgreSQL and Redis', () => {
  const dbName = `vdi_test_${randomBytes(4).toString('hex')}`;
  const url = PG_ADMIN.replace(/\/[^/]*$/, `/${dbName}`);
  let a: TestServer;
  let b: TestServer;
  const viewers = new Viewers();

  beforeAll(async () => {
    const admin = new pg.Client({ connectionString: PG_ADMIN });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    await admin.end();
    const dirs = tempDirs('vdi-pg');
    // both nodes share the database, the cookie secret and (here) the machine the desktops run on
    const env = {
      DATABASE_URL: url,
      REDIS_URL: REDIS,
      DEFAULT_GEOMETRY: '640x480',
      SESSION_SECRET: randomBytes(24).toString('hex'),
    };
    a = await startServer(testConfig(env, dirs));
    b = await startServer(testConfig(env, dirs));
  });

  afterAll(async () => {
    viewers.closeAll();
    await a?.close();
    await b?.close();
    const admin = new pg.Client({ connectionString: PG_ADMIN });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  });

  it('runs migrations on PostgreSQL and serves sign-in from either node', async () => {
    expect(a.server.store.dialect).toBe('postgres');
    const viaA = await new Api(a.url).login(ADMIN.username, ADMIN.password);
    // the sign-in cookie from node A works on node B (sessions live in the shared database)
    const viaB = new Api(b.url);
    viaB.cookie = viaA.cookie;
    expect((await viaB.get('/api/auth/me')).body).toMatchObject({
      username: ADMIN.username,
      role: 'admin',
    });
    expect((await viaA.get('/api/desktops')).body).toEqual((await viaB.get('/api/desktops')).body);
  });

  it('resumes a session started on one node from the other, and routes messages across nodes', async () => {
    const userA = await new Api(a.url).login(ADMIN.username, ADMIN.password);
    const pools = (await userA.get('/api/desktops')).body as { poolId: string }[];
    const first = await userA.post(`/api/pools/${pools[0]!.poolId}/connect`);
    expect(first.status).toBe(200);
    const userB = await new Api(b.url).login(ADMIN.username, ADMIN.password);
    const again = await userB.post(`/api/pools/${pools[0]!.poolId}/connect`);
    expect(again.body).toMatchObject({
      sessionId: first.body.sessionId,
      desktopId: first.body.desktopId,
      resumed: true,
    });

    // a viewer on node B
    const s = viewers.open(b.url, { cookie: userB.cookie });
    const frames = receiveFrames(s);
    const notices: string[] = [];
    s.on('notice', (n) => notices.push(n.text));
    await connected(s);
    const res = await attach(s, { sessionId: first.body.sessionId });
    expect(res.ok).toBe(true);
    await until(() => frames.length > 0, 15_000, 'frames on node B');

    // the admin API on node A sees the session and its message reaches node B's viewer
    const sessions = (await userA.get('/api/admin/sessions')).body as {
      id: string;
      state: string;
    }[];
    expect(sessions.find((x) => x.id === first.body.sessionId)?.state).toBe('active');
    expect(
      (
        await userA.post(`/api/admin/sessions/${first.body.sessionId}/message`, {
          text: 'hello from node A',
        })
      ).status,
    ).toBe(204);
    await until(() => notices.includes('hello from node A'), 10_000, 'message across nodes');

    // log-off through node A ends the viewer on node B
    const ended = new Promise<{ state: string }>((r) =>
      s.on('session', (m) => m.state === 'ended' && r(m)),
    );
    expect((await userA.post(`/api/sessions/${first.body.sessionId}/logoff`)).status).toBe(204);
    expect((await ended).state).toBe('ended');
  });
});
