import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deletePoolsAndClose,
  expectNoXvncLeft,
  PARKED_BROKER,
  startXvncServer,
  xvncUnder,
} from '../helpers/desktops.js';
import { Api, ADMIN, tempDirs, testConfig, type TestServer } from '../helpers/server.js';

/*
 * Races through the real HTTP API against real Xvnc desktops, fired with Promise.all:
 * many Connects by one user, and several users going for the last spare of a full pool.
 */

const dirs = tempDirs('vdibr');

/** this file's own range of X displays (see xvncProvider) */
const FIRST_DISPLAY = 440;
let ts: TestServer;
let admin: Api;
const pools: string[] = [];

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

async function newUser(name: string, poolId: string): Promise<Api> {
  const password = `${name}-password-1`;
  const r = await admin.post('/api/admin/users', { username: name, password });
  expect(r.status).toBe(201);
  expect(
    (
      await admin.post('/api/admin/entitlements', {
        poolId,
        principalType: 'user',
        principalId: r.body.id,
      })
    ).status,
  ).toBe(201);
  return new Api(ts.url).login(name, password);
}

async function desktops(poolId: string) {
  return ts.server.store.db
    .selectFrom('desktops')
    .selectAll()
    .where('pool_id', '=', poolId)
    .execute();
}

/** the store's invariant: never two live sessions on one desktop, and every live session's desktop runs */
async function expectOneLiveSessionPerDesktop(): Promise<void> {
  const db = ts.server.store.db;
  const shared = await db
    .selectFrom('sessions')
    .select(['desktop_id', (eb) => eb.fn.countAll<number>().as('n')])
    .where('state', '<>', 'ended')
    .groupBy('desktop_id')
    .having((eb) => eb.fn.countAll(), '>', 1)
    .execute();
  expect(shared).toEqual([]);
  const live = await db
    .selectFrom('sessions as s')
    .leftJoin('desktops as d', 'd.id', 's.desktop_id')
    .select(['s.id', 'd.state', 'd.handle'])
    .where('s.state', '<>', 'ended')
    .execute();
  for (const s of live) {
    expect(s.state).toBe('in-use');
    expect(s.handle).not.toBeNull();
  }
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

describe('races (real Xvnc, parallel HTTP requests)', () => {
  it('many parallel Connects by one user: one session, one desktop, one Xvnc', async () => {
    const poolId = await createPool({ name: 'one-user', maxSize: 5 });
    const u = await newUser('clicker', poolId);
    const xvncBefore = xvncUnder(dirs.runDir).length;
    const rs = await Promise.all(
      Array.from({ length: 12 }, () => u.post(`/api/pools/${poolId}/connect`)),
    );
    expect(rs.map((r) => r.status)).toEqual(Array(12).fill(200));
    expect(new Set(rs.map((r) => r.body.sessionId)).size).toBe(1);
    expect(new Set(rs.map((r) => r.body.desktopId)).size).toBe(1);
    expect(rs.filter((r) => r.body.resumed === false)).toHaveLength(1);
    expect(await desktops(poolId)).toHaveLength(1);
    expect(xvncUnder(dirs.runDir).length).toBe(xvncBefore + 1);
    await expectOneLiveSessionPerDesktop();
  });

  it('users racing for the last spare of a full pool: exactly one gets it, the rest get POOL_FULL', async () => {
    const poolId = await createPool({ name: 'last-spare', maxSize: 2, spares: 2 });
    expect((await desktops(poolId)).map((d) => d.state)).toEqual(['ready', 'ready']);
    const holder = await newUser('holder', poolId);
    const held = await holder.post(`/api/pools/${poolId}/connect`);
    expect(held.status).toBe(200);
    await ts.server.broker.tick();
    // max reached: one desktop in use, one spare left, and the tick cannot add another
    const before = await desktops(poolId);
    expect(before.map((d) => d.state).sort()).toEqual(['in-use', 'ready']);
    const lastSpare = before.find((d) => d.state === 'ready')!;

    const racers = await Promise.all(
      ['racer1', 'racer2', 'racer3', 'racer4'].map((n) => newUser(n, poolId)),
    );
    const xvncBefore = xvncUnder(dirs.runDir).sort();
    const rs = await Promise.all(racers.map((r) => r.post(`/api/pools/${poolId}/connect`)));
    const won = rs.filter((r) => r.status === 200);
    const lost = rs.filter((r) => r.status !== 200);
    expect(won).toHaveLength(1);
    expect(won[0]!.body.desktopId).toBe(lastSpare.id);
    expect(lost.map((r) => [r.status, r.error?.code])).toEqual(Array(3).fill([409, 'POOL_FULL']));

    // nothing was created for the losers
    expect(xvncUnder(dirs.runDir).sort()).toEqual(xvncBefore);
    expect(await desktops(poolId)).toHaveLength(2);
    const live = await ts.server.store.db
      .selectFrom('sessions')
      .select(['user_id', 'desktop_id'])
      .where('pool_id', '=', poolId)
      .where('state', '<>', 'ended')
      .execute();
    expect(live).toHaveLength(2);
    await expectOneLiveSessionPerDesktop();
  });

  it('users racing for the last free capacity (no spare): exactly one desktop is started', async () => {
    const poolId = await createPool({ name: 'last-slot', maxSize: 2 });
    const holder = await newUser('holder2', poolId);
    expect((await holder.post(`/api/pools/${poolId}/connect`)).status).toBe(200);
    const racers = await Promise.all(['slot1', 'slot2', 'slot3'].map((n) => newUser(n, poolId)));
    const xvncBefore = xvncUnder(dirs.runDir).length;
    const rs = await Promise.all(racers.map((r) => r.post(`/api/pools/${poolId}/connect`)));
    expect(rs.map((r) => r.status).sort()).toEqual([200, 409, 409]);
    for (const r of rs.filter((x) => x.status === 409)) expect(r.error?.code).toBe('POOL_FULL');
    expect(await desktops(poolId)).toHaveLength(2);
    expect(xvncUnder(dirs.runDir).length).toBe(xvncBefore + 1);
    await expectOneLiveSessionPerDesktop();
  });
});
