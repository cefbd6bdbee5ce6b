import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import {
  alive,
  deletePoolsAndClose,
  desktopHandle,
  expectNoXvncLeft,
  PARKED_BROKER,
  startXvncServer,
} from '../helpers/desktops.js';
import { Api, ADMIN, tempDirs, testConfig, until, type TestServer } from '../helpers/server.js';
import { Viewers } from '../helpers/viewer.js';

/*
 * Session timeouts with a ManualClock, against real Xvnc desktops and real Socket.IO viewers:
 * disconnected-timeout, idle-timeout (no input) and max session length. Each log-off must
 * show in the session row, reach the viewer, stop the desktop and land in the audit log with
 * its reason. Time only moves when the test moves it; the broker's timer is parked.
 */

const dirs = tempDirs('vdibt');

/** this file's own range of X displays (see xvncProvider) */
const FIRST_DISPLAY = 420;
// start at the real time: cookie expiry is written with real time and read with this clock
const clock = new ManualClock(Date.now());
let ts: TestServer;
let admin: Api;
const pools: string[] = [];
const viewers = new Viewers();

async function session(id: string) {
  return ts.server.store.db
    .selectFrom('sessions')
    .selectAll()
    .where('id', '=', id)
    .executeTakeFirstOrThrow();
}

/** a pool, a user entitled to it, their session with a viewer attached (state active) */
async function activeSession(name: string, pool: Record<string, unknown>) {
  const p = await admin.post('/api/admin/pools', {
    name,
    provider: 'xvnc',
    template: { width: 640, height: 480 },
    maxSize: 2,
    ...pool,
  });
  expect(p.status).toBe(201);
  pools.push(p.body.id);
  const password = `${name}-password-1`;
  const u = await admin.post('/api/admin/users', { username: name, password });
  await admin.post('/api/admin/entitlements', {
    poolId: p.body.id,
    principalType: 'user',
    principalId: u.body.id,
  });
  const api = await new Api(ts.url).login(name, password);
  const c = await api.post(`/api/pools/${p.body.id}/connect`);
  expect(c.status).toBe(200);
  const sessionId = c.body.sessionId;
  const v = await viewers.attached(ts.url, api.cookie, sessionId);
  await until(
    async () => (await session(sessionId)).state === 'active',
    10_000,
    'the session to become active',
  );
  return {
    api,
    sessionId,
    desktopId: c.body.desktopId,
    pid: (await desktopHandle(ts, c.body.desktopId)).xvncPid,
    ...v,
  };
}

async function auditFor(sessionId: string, action: string) {
  const r = await admin.get(
    `/api/admin/audit?action=${encodeURIComponent(action)}&target=${sessionId}`,
  );
  expect(r.status).toBe(200);
  return r.body as {
    actor: string | null;
    action: string;
    detail: { reason?: string } | null;
    at: string;
  }[];
}

beforeAll(async () => {
  ts = await startXvncServer(testConfig(PARKED_BROKER, dirs), FIRST_DISPLAY, { clock });
  admin = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
});

afterAll(async () => {
  try {
    viewers.closeAll();
    if (ts) await deletePoolsAndClose(ts, admin, pools);
  } finally {
    expectNoXvncLeft(dirs);
  }
});

describe('timeouts (manual clock, real Xvnc, real viewers)', () => {
  it('disconnected-timeout: a session with a viewer is kept; without one it is logged off after the timeout', async () => {
    const s = await activeSession('disc', { disconnectedTimeoutSec: 300, idleTimeoutSec: 0 });
    // a viewer is attached: however long, the disconnected-timeout does not apply
    clock.advance(3_000_000);
    await ts.server.broker.tick();
    expect((await session(s.sessionId)).state).toBe('active');

    s.socket.close();
    await until(
      async () => (await session(s.sessionId)).state === 'disconnected',
      10_000,
      'the session to be disconnected',
    );
    clock.advance(299_000);
    await ts.server.broker.tick();
    expect((await session(s.sessionId)).state).toBe('disconnected');
    expect(alive(s.pid)).toBe(true);

    clock.advance(1_000);
    await ts.server.broker.tick();
    expect(await session(s.sessionId)).toMatchObject({
      state: 'ended',
      ended_reason: 'disconnected too long',
    });
    expect(alive(s.pid)).toBe(false);
    expect(await ts.server.broker.desktop(s.desktopId)).toBeUndefined();

    const disc = await auditFor(s.sessionId, 'session.disconnect');
    expect(disc).toHaveLength(1);
    expect(disc[0]!.actor).toBe('disc');
    const ends = await auditFor(s.sessionId, 'session.end');
    expect(ends).toHaveLength(1);
    expect(ends[0]).toMatchObject({ actor: 'system', detail: { reason: 'disconnected too long' } });
    expect(ends[0]!.at).toBe(new Date(clock.now()).toISOString());
    // the user's own list shows the session gone
    const mine = await s.api.get('/api/desktops');
    expect(mine.body.flatMap((p: { sessions: unknown[] }) => p.sessions)).toEqual([]);
  });

  it('idle-timeout: input keeps the session alive; no input for the timeout logs it off and tells the viewer', async () => {
    const s = await activeSession('idle', { idleTimeoutSec: 120, disconnectedTimeoutSec: 0 });
    clock.advance(100_000);
    s.socket.emit('pointer', { x: 10, y: 10, buttons: 0 });
    const inputAt = new Date(clock.now()).toISOString();
    await until(
      async () => (await session(s.sessionId)).last_input_at === inputAt,
      10_000,
      'the input time to be recorded',
    );

    const warnings: Array<{ kind: string; inMs: number }> = [];
    s.socket.on('warning', (m) => warnings.push(m));
    clock.advance(30_000); // 30 s since the input: the log-off is 90 s away, not yet warned of
    await ts.server.broker.tick();
    clock.advance(70_000); // 200 s since attach, 100 s since the input
    await ts.server.broker.tick();
    expect((await session(s.sessionId)).state).toBe('active');
    // warned ahead (at most half the 120 s timeout ahead), with the time left
    await until(() => warnings.length > 0, 10_000, 'the log-off warning');
    expect(warnings).toEqual([{ kind: 'idle', inMs: 20_000 }]);

    clock.advance(20_000);
    await ts.server.broker.tick();
    expect(await session(s.sessionId)).toMatchObject({
      state: 'ended',
      ended_reason: 'idle too long',
    });
    await s.closed;
    expect(s.statuses).toContainEqual({ state: 'ended', reason: 'idle too long' });
    expect(alive(s.pid)).toBe(false);
    const ends = await auditFor(s.sessionId, 'session.end');
    expect(ends).toHaveLength(1);
    expect(ends[0]).toMatchObject({ actor: 'system', detail: { reason: 'idle too long' } });
  });

  it('max session length: ends a busy session at its limit', async () => {
    const s = await activeSession('maxlen', {
      maxSessionSec: 600,
      idleTimeoutSec: 60,
      disconnectedTimeoutSec: 0,
    });
    // busy: input every 50 s keeps the idle-timeout away
    for (let t = 0; t < 550; t += 50) {
      clock.advance(50_000);
      s.socket.emit('pointer', { x: t % 600, y: 20, buttons: 0 });
      const at = new Date(clock.now()).toISOString();
      await until(
        async () => (await session(s.sessionId)).last_input_at === at,
        10_000,
        'the input time to be recorded',
      );
      await ts.server.broker.tick();
      expect((await session(s.sessionId)).state).toBe('active');
    }
    clock.advance(49_000); // 599 s
    await ts.server.broker.tick();
    expect((await session(s.sessionId)).state).toBe('active');
    clock.advance(1_000);
    await ts.server.broker.tick();
    expect(await session(s.sessionId)).toMatchObject({
      state: 'ended',
      ended_reason: 'maximum session length reached',
    });
    await s.closed;
    expect(s.statuses).toContainEqual({ state: 'ended', reason: 'maximum session length reached' });
    expect(alive(s.pid)).toBe(false);
    expect((await auditFor(s.sessionId, 'session.end'))[0]).toMatchObject({
      actor: 'system',
      detail: { reason: 'maximum session length reached' },
    });
  });
});
