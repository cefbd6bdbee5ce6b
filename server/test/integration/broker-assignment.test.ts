import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  alive,
  deletePoolsAndClose,
  expectNoXvncLeft,
  handleOf,
  PARKED_BROKER,
  startXvncServer,
  xvncUnder,
} from '../helpers/desktops.js';
import { Api, ADMIN, tempDirs, testConfig, until, type TestServer } from '../helpers/server.js';

/*
 * Assignment rules against real TigerVNC Xvnc desktops through the REST API: dedicated and
 * floating pools, warm spares, min size, pool full, drain, resize, delete. The broker's timer
 * is parked (BROKER_TICK_MS) and each test drives `broker.tick()` itself.
 */

const dirs = tempDirs('vdiba');
/** this file's own range of X displays (see xvncProvider) */
const FIRST_DISPLAY = 400;
let ts: TestServer;
let admin: Api;
const pools: string[] = [];

async function rows(poolId: string) {
  return ts.server.store.db
    .selectFrom('desktops')
    .selectAll()
    .where('pool_id', '=', poolId)
    .orderBy('created_at')
    .execute();
}

async function createPool(body: Record<string, unknown>): Promise<string> {
  const r = await admin.post('/api/admin/pools', {
    provider: 'xvnc',
    template: { width: 640, height: 480 },
    ...body,
  });
  expect(r.status).toBe(201);
  pools.push(r.body.id);
  await ts.server.broker.tick();
  return r.body.id;
}

async function newUser(name: string, ...poolIds: string[]): Promise<{ api: Api; id: string }> {
  const password = `${name}-password-1`;
  const r = await admin.post('/api/admin/users', { username: name, password });
  expect(r.status).toBe(201);
  for (const poolId of poolIds) {
    expect(
      (
        await admin.post('/api/admin/entitlements', {
          poolId,
          principalType: 'user',
          principalId: r.body.id,
        })
      ).status,
    ).toBe(201);
  }
  return { api: await new Api(ts.url).login(name, password), id: r.body.id };
}

async function connect(
  u: { api: Api },
  poolId: string,
): Promise<{ sessionId: string; desktopId: string; resumed: boolean }> {
  const r = await u.api.post(`/api/pools/${poolId}/connect`);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
}

beforeAll(async () => {
  ts = await startXvncServer(testConfig(PARKED_BROKER, dirs), FIRST_DISPLAY);
  admin = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
});

afterAll(async () => {
  try {
    if (ts) await deletePoolsAndClose(ts, admin, pools);
  } finally {
    expectNoXvncLeft(dirs);
  }
});

describe('floating pool (real Xvnc)', () => {
  it('takes a warm spare, replenishes it, destroys the desktop at log-off and returns to the spare count', async () => {
    const poolId = await createPool({
      name: 'floating',
      assignment: 'floating',
      maxSize: 3,
      spares: 1,
    });
    const [spare] = await rows(poolId);
    expect(spare?.state).toBe('ready');
    const sparePid = handleOf(spare!).xvncPid;
    expect(alive(sparePid)).toBe(true);

    const alice = await newUser('alice', poolId);
    const c = await connect(alice, poolId);
    expect(c).toMatchObject({ desktopId: spare!.id, resumed: false });
    expect(await connect(alice, poolId)).toEqual({ ...c, resumed: true });

    // the spare taken is replaced on the next tick
    await ts.server.broker.tick();
    const afterTake = await rows(poolId);
    expect(afterTake.map((d) => d.state).sort()).toEqual(['in-use', 'ready']);
    const newSpare = afterTake.find((d) => d.state === 'ready')!;
    expect(alive(handleOf(newSpare).xvncPid)).toBe(true);

    const home = handleOf(spare!).home;
    expect(fs.existsSync(home)).toBe(true);
    expect((await alice.api.post(`/api/sessions/${c.sessionId}/logoff`)).status).toBe(204);
    expect(alive(sparePid)).toBe(false);
    expect(fs.existsSync(home)).toBe(false);
    const afterLogoff = await rows(poolId);
    expect(afterLogoff.map((d) => d.id)).toEqual([newSpare.id]);
    await ts.server.broker.tick();
    expect((await rows(poolId)).map((d) => d.state)).toEqual(['ready']);

    // the next Connect is a fresh session on another desktop
    const next = await connect(alice, poolId);
    expect(next.resumed).toBe(false);
    expect(next.desktopId).not.toBe(c.desktopId);
    expect((await alice.api.post(`/api/sessions/${next.sessionId}/logoff`)).status).toBe(204);
  });

  it('keeps min size desktops started', async () => {
    const poolId = await createPool({ name: 'min-size', minSize: 2, maxSize: 3, spares: 0 });
    const ds = await rows(poolId);
    expect(ds.map((d) => d.state)).toEqual(['ready', 'ready']);
    for (const d of ds) expect(alive(handleOf(d).xvncPid)).toBe(true);
    // still two after another tick: min size is a floor, not a per-tick increment
    await ts.server.broker.tick();
    expect(await rows(poolId)).toHaveLength(2);
  });

  it('resizing down trims idle spares and stops their Xvnc', async () => {
    const poolId = await createPool({ name: 'resize', maxSize: 4, spares: 3 });
    const before = await rows(poolId);
    expect(before).toHaveLength(3);
    const r = await admin.patch(`/api/admin/pools/${poolId}`, { spares: 1 });
    expect(r.status).toBe(200);
    expect(r.body.spares).toBe(1);
    await ts.server.broker.tick();
    const after = await rows(poolId);
    expect(after).toHaveLength(1);
    const gone = before.filter((d) => !after.some((a) => a.id === d.id));
    expect(gone).toHaveLength(2);
    for (const d of gone) expect(alive(handleOf(d).xvncPid)).toBe(false);
    expect(alive(handleOf(after[0]!).xvncPid)).toBe(true);
  });
});

describe('dedicated pool (real Xvnc)', () => {
  it('gives the owner the same desktop across log-offs, restarts it with its home kept, never gives it to anyone else', async () => {
    // the session command counts its starts in the desktop's home (its working directory)
    const poolId = await createPool({
      name: 'dedicated',
      assignment: 'dedicated',
      maxSize: 1,
      template: {
        width: 640,
        height: 480,
        sessionCommand: 'echo started >> starts; openbox & exec xterm',
      },
    });
    const owner = await newUser('owner', poolId);
    const other = await newUser('other', poolId);

    const first = await connect(owner, poolId);
    const [d1] = await rows(poolId);
    expect(d1).toMatchObject({ id: first.desktopId, owner_user_id: owner.id, state: 'in-use' });
    const { xvncPid: pid1, home } = handleOf(d1!);
    const starts = path.join(home, 'starts');
    await until(
      () => fs.readFileSync(starts, 'utf8') === 'started\n',
      10_000,
      'the first start to be recorded in the home',
    );

    expect((await owner.api.post(`/api/sessions/${first.sessionId}/logoff`)).status).toBe(204);
    const [stopped] = await rows(poolId);
    expect(stopped).toMatchObject({
      id: first.desktopId,
      state: 'stopped',
      handle: null,
      owner_user_id: owner.id,
    });
    expect(alive(pid1)).toBe(false);
    expect(fs.readFileSync(starts, 'utf8')).toBe('started\n');

    // the only desktop is the owner's, stopped: another user gets POOL_FULL, not that desktop
    const refused = await other.api.post(`/api/pools/${poolId}/connect`);
    expect(refused.status).toBe(409);
    expect(refused.error?.code).toBe('POOL_FULL');
    expect(await rows(poolId)).toHaveLength(1);
    expect((await rows(poolId))[0]!.state).toBe('stopped');

    const second = await connect(owner, poolId);
    expect(second.resumed).toBe(false);
    expect(second.sessionId).not.toBe(first.sessionId);
    expect(second.desktopId).toBe(first.desktopId);
    const [d2] = await rows(poolId);
    const h2 = handleOf(d2!);
    expect(h2.xvncPid).not.toBe(pid1);
    expect(alive(h2.xvncPid)).toBe(true);
    expect(h2.home).toBe(home);
    // the same home: the second start appended to the first one's file
    await until(
      () => fs.readFileSync(starts, 'utf8') === 'started\nstarted\n',
      10_000,
      'the second start to be recorded in the same home',
    );
    expect((await owner.api.post(`/api/sessions/${second.sessionId}/logoff`)).status).toBe(204);
  });
});

describe('pool full, drain, delete (real Xvnc)', () => {
  it('pool full: 409 POOL_FULL with nothing half-created', async () => {
    const poolId = await createPool({ name: 'full', maxSize: 1 });
    const a = await newUser('full-a', poolId);
    const b = await newUser('full-b', poolId);
    const c = await connect(a, poolId);
    const xvncBefore = xvncUnder(dirs.runDir).sort();
    const r = await b.api.post(`/api/pools/${poolId}/connect`);
    expect(r.status).toBe(409);
    expect(r.error).toMatchObject({ code: 'POOL_FULL' });
    expect(r.error?.message).toMatch(/full/);
    expect((await rows(poolId)).map((d) => d.id)).toEqual([c.desktopId]);
    const bSessions = await ts.server.store.db
      .selectFrom('sessions')
      .selectAll()
      .where('user_id', '=', b.id)
      .execute();
    expect(bSessions).toEqual([]);
    expect(xvncUnder(dirs.runDir).sort()).toEqual(xvncBefore);
    // B's list shows no session either
    const mine = await b.api.get('/api/desktops');
    expect(mine.body.find((p) => p.poolId === poolId)?.sessions).toEqual([]);
    expect((await a.api.post(`/api/sessions/${c.sessionId}/logoff`)).status).toBe(204);
  });

  it('drain: new sessions get POOL_DRAINING, existing ones still resume, spares are stopped', async () => {
    const poolId = await createPool({ name: 'drain', maxSize: 4, spares: 1 });
    const a = await newUser('drain-a', poolId);
    const b = await newUser('drain-b', poolId);
    const c = await connect(a, poolId);
    await ts.server.broker.tick();
    const spare = (await rows(poolId)).find((d) => d.state === 'ready')!;
    expect(spare).toBeDefined();

    const p = await admin.patch(`/api/admin/pools/${poolId}`, { draining: true });
    expect(p.body.draining).toBe(true);
    const refused = await b.api.post(`/api/pools/${poolId}/connect`);
    expect(refused.status).toBe(409);
    expect(refused.error?.code).toBe('POOL_DRAINING');
    expect(await connect(a, poolId)).toEqual({ ...c, resumed: true });
    // users see the pool is draining
    const list = await b.api.get('/api/desktops');
    expect(list.body.find((x) => x.poolId === poolId)?.draining).toBe(true);

    await ts.server.broker.tick();
    expect((await rows(poolId)).map((d) => d.id)).toEqual([c.desktopId]);
    expect(alive(handleOf(spare).xvncPid)).toBe(false);
    expect((await a.api.post(`/api/sessions/${c.sessionId}/logoff`)).status).toBe(204);
  });

  it('delete: refused with SESSIONS_ACTIVE while a session lives, force logs it off and stops every desktop', async () => {
    const poolId = await createPool({ name: 'delete-me', maxSize: 3, spares: 1 });
    const a = await newUser('del-a', poolId);
    const c = await connect(a, poolId);
    await ts.server.broker.tick();
    const ds = await rows(poolId);
    expect(ds).toHaveLength(2);
    const pids = ds.map((d) => handleOf(d).xvncPid);

    const refused = await admin.del(`/api/admin/pools/${poolId}`);
    expect(refused.status).toBe(409);
    expect(refused.error?.code).toBe('SESSIONS_ACTIVE');
    expect((await admin.get(`/api/admin/pools/${poolId}`)).status).toBe(200);
    expect((await ts.server.broker.session(c.sessionId))?.state).not.toBe('ended');
    for (const pid of pids) expect(alive(pid)).toBe(true);

    expect((await admin.del(`/api/admin/pools/${poolId}?force=true`)).status).toBe(204);
    expect((await admin.get(`/api/admin/pools/${poolId}`)).status).toBe(404);
    expect(await ts.server.broker.session(c.sessionId)).toMatchObject({
      state: 'ended',
      ended_reason: 'pool deleted',
    });
    expect(await rows(poolId)).toEqual([]);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    // the user no longer sees it
    expect(
      (await a.api.get('/api/desktops')).body.some((x: { poolId: string }) => x.poolId === poolId),
    ).toBe(false);
  });
});
