import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/index.js';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import {
  alive,
  desktopHandle,
  handleOf,
  expectNoXvncLeft,
  PARKED_BROKER,
  startXvncServer,
  xvncProvider,
  xvncUnder,
} from '../helpers/desktops.js';
import { Api, ADMIN, tempDirs, testConfig, until, type TestServer } from '../helpers/server.js';
import { Viewers } from '../helpers/viewer.js';

/*
 * Broker restart with real Xvnc desktops in every state: an active session, a disconnected
 * one, a ready spare, a dedicated desktop at rest, two desktops whose Xvnc is killed while the
 * server is down (one floating, one dedicated), and a leftover Xvnc that the provider started
 * but no row accounts for. The server is closed (desktops keep running), a new one starts on
 * the same data and run dirs, and everything must be re-adopted or cleaned up.
 */

const dirs = tempDirs('vdirs');

/** this file's own range of X displays (see xvncProvider) */
const FIRST_DISPLAY = 460;
let config: Config;
let first: TestServer | undefined;
let second: TestServer | undefined;
const viewers = new Viewers();

/** pids of any process whose command line or environment mentions `dir` */
function processesUsing(dir: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (
        fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(dir) ||
        fs.readFileSync(`/proc/${e}/environ`, 'utf8').includes(dir)
      )
        out.push(Number(e));
    } catch {
      /* exited while we looked */
    }
  }
  return out;
}

/** what each actor of the scenario got before the restart */
interface Before {
  floating: string;
  dedicated: string;
  users: Record<'active' | 'disc' | 'rest' | 'lost' | 'dedLost', { id: string; cookie: string }>;
  sessions: Record<'active' | 'disc' | 'rest' | 'lost' | 'dedLost', string>;
  desktops: Record<'active' | 'disc' | 'spare' | 'rest' | 'lost' | 'dedLost', string>;
  pids: Record<'active' | 'disc' | 'spare' | 'lost' | 'dedLost', number>;
  handles: Record<'lost' | 'dedLost', XvncHandle>;
  leftover: XvncHandle;
}
let before: Before;

beforeAll(async () => {
  config = testConfig(PARKED_BROKER, dirs);
  first = await startXvncServer(config, FIRST_DISPLAY);
  const s = first;
  const admin = await new Api(s.url).login(ADMIN.username, ADMIN.password);
  const fl = await admin.post('/api/admin/pools', {
    name: 'floating',
    provider: 'xvnc',
    template: { width: 640, height: 480 },
    maxSize: 6,
    spares: 1,
    disconnectedTimeoutSec: 0,
  });
  const de = await admin.post('/api/admin/pools', {
    name: 'dedicated',
    provider: 'xvnc',
    assignment: 'dedicated',
    template: {
      width: 640,
      height: 480,
      sessionCommand: 'echo started >> starts; openbox & exec xterm',
    },
    maxSize: 4,
    disconnectedTimeoutSec: 0,
  });
  expect([fl.status, de.status]).toEqual([201, 201]);
  const floating = fl.body.id;
  const dedicated = de.body.id;

  const users = {} as Before['users'];
  const apis = {} as Record<keyof Before['users'], Api>;
  for (const name of ['active', 'disc', 'rest', 'lost', 'dedLost'] as const) {
    const password = `${name}-password-1`;
    const u = await admin.post('/api/admin/users', { username: `u-${name}`, password });
    for (const poolId of [floating, dedicated])
      await admin.post('/api/admin/entitlements', {
        poolId,
        principalType: 'user',
        principalId: u.body.id,
      });
    apis[name] = await new Api(s.url).login(`u-${name}`, password);
    users[name] = { id: u.body.id, cookie: apis[name].cookie };
  }
  const connect = async (who: keyof Before['users'], poolId: string) => {
    const r = await apis[who].post(`/api/pools/${poolId}/connect`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body as { sessionId: string; desktopId: string };
  };

  const active = await connect('active', floating);
  await viewers.attached(s.url, users.active.cookie, active.sessionId);
  const disc = await connect('disc', floating);
  const discViewer = await viewers.attached(s.url, users.disc.cookie, disc.sessionId);
  discViewer.socket.close();
  const lost = await connect('lost', floating);
  const rest = await connect('rest', dedicated);
  expect((await apis.rest.post(`/api/sessions/${rest.sessionId}/logoff`)).status).toBe(204);
  const dedLost = await connect('dedLost', dedicated);
  await s.server.broker.tick(); // a warm spare for the floating pool
  const spare = (
    await s.server.store.db
      .selectFrom('desktops')
      .select(['id', 'state'])
      .where('pool_id', '=', floating)
      .where('state', '=', 'ready')
      .execute()
  )[0];
  expect(spare).toBeDefined();

  const sessionState = (id: string) =>
    s.server.store.db
      .selectFrom('sessions')
      .select('state')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
  await until(
    async () => (await sessionState(active.sessionId)).state === 'active',
    10_000,
    'the active session',
  );
  await until(
    async () => (await sessionState(disc.sessionId)).state === 'disconnected',
    10_000,
    'the disconnected session',
  );

  // a desktop the provider started but the store never heard of (server died in between)
  const provider = xvncProvider(config, FIRST_DISPLAY);
  const leftover = (await provider.create(
    {
      desktopId: randomUUID(),
      poolId: floating,
      template: { width: 640, height: 480, sessionCommand: 'openbox & exec xterm' },
      persistent: false,
    },
    pino({ level: 'silent' }),
  )) as unknown as XvncHandle;

  const handles = {
    active: await desktopHandle(s, active.desktopId),
    disc: await desktopHandle(s, disc.desktopId),
    spare: await desktopHandle(s, spare!.id),
    lost: await desktopHandle(s, lost.desktopId),
    dedLost: await desktopHandle(s, dedLost.desktopId),
  };
  before = {
    floating,
    dedicated,
    users,
    sessions: {
      active: active.sessionId,
      disc: disc.sessionId,
      rest: rest.sessionId,
      lost: lost.sessionId,
      dedLost: dedLost.sessionId,
    },
    desktops: {
      active: active.desktopId,
      disc: disc.desktopId,
      spare: spare!.id,
      rest: rest.desktopId,
      lost: lost.desktopId,
      dedLost: dedLost.desktopId,
    },
    pids: {
      active: handles.active.xvncPid,
      disc: handles.disc.xvncPid,
      spare: handles.spare.xvncPid,
      lost: handles.lost.xvncPid,
      dedLost: handles.dedLost.xvncPid,
    },
    handles: { lost: handles.lost, dedLost: handles.dedLost },
    leftover,
  };
  // five desktops of ours plus the leftover are running
  expect(xvncUnder(dirs.runDir)).toEqual(
    [...Object.values(before.pids), leftover.xvncPid].sort((a, b) => a - b),
  );

  await s.close();
  first = undefined;
  // desktops outlive the server
  for (const pid of Object.values(before.pids)) expect(alive(pid)).toBe(true);
  // while it is down, two desktops die
  process.kill(before.pids.lost, 'SIGKILL');
  process.kill(before.pids.dedLost, 'SIGKILL');
  await until(
    () => !alive(before.pids.lost) && !alive(before.pids.dedLost),
    10_000,
    'the killed Xvnc to exit',
  );

  second = await startXvncServer(config, FIRST_DISPLAY);
});

afterAll(async () => {
  try {
    viewers.closeAll();
    for (const s of [first, second]) {
      if (!s) continue;
      const admin = await new Api(s.url).login(ADMIN.username, ADMIN.password);
      await s.server.broker.tick();
      const pools = await admin.get('/api/admin/pools');
      for (const p of pools.body as { id: string }[])
        await admin.del(`/api/admin/pools/${p.id}?force=true`);
      await s.close();
    }
  } finally {
    expectNoXvncLeft(dirs);
  }
});

describe('broker restart (real Xvnc)', () => {
  const db = () => second!.server.store.db;
  const desktop = (id: string) =>
    db().selectFrom('desktops').selectAll().where('id', '=', id).executeTakeFirst();
  const session = (id: string) =>
    db().selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

  it('re-adopts running desktops with the same Xvnc process', async () => {
    for (const k of ['active', 'disc', 'spare'] as const) {
      const d = await desktop(before.desktops[k]);
      expect(d, k).toBeDefined();
      expect(handleOf(d!).xvncPid, k).toBe(before.pids[k]);
      expect(alive(before.pids[k]), k).toBe(true);
    }
    expect((await desktop(before.desktops.active))!.state).toBe('in-use');
    expect((await desktop(before.desktops.disc))!.state).toBe('in-use');
    expect((await desktop(before.desktops.spare))!.state).toBe('ready');
    // no viewer survives a restart: the active session is now disconnected, and still live
    expect((await session(before.sessions.active)).state).toBe('disconnected');
    expect((await session(before.sessions.disc)).state).toBe('disconnected');
  });

  it('keeps the dedicated desktop at rest for its owner', async () => {
    expect(await desktop(before.desktops.rest)).toMatchObject({
      state: 'stopped',
      handle: null,
      owner_user_id: before.users.rest.id,
    });
    expect((await session(before.sessions.rest)).state).toBe('ended');
  });

  it('cleans up desktops that died while the server was down and ends their sessions with a reason', async () => {
    expect(await desktop(before.desktops.lost)).toBeUndefined();
    expect(await session(before.sessions.lost)).toMatchObject({
      state: 'ended',
      ended_reason: 'desktop lost while the server was down',
    });
    expect(fs.existsSync(path.dirname(before.handles.lost.socket))).toBe(false);
    // a dedicated one is kept, stopped, with its home, for its owner
    expect(await desktop(before.desktops.dedLost)).toMatchObject({
      state: 'stopped',
      handle: null,
      owner_user_id: before.users.dedLost.id,
    });
    expect(await session(before.sessions.dedLost)).toMatchObject({
      state: 'ended',
      ended_reason: 'desktop lost while the server was down',
    });
    expect(fs.readFileSync(path.join(before.handles.dedLost.home, 'starts'), 'utf8')).toBe(
      'started\n',
    );
    // their session processes (window manager, terminal, its shell) are gone too
    for (const h of [before.handles.lost, before.handles.dedLost]) {
      expect(alive(h.sessionPid)).toBe(false);
      await until(
        () => processesUsing(path.dirname(h.socket)).length === 0,
        10_000,
        `no process left using ${path.dirname(h.socket)}`,
      );
    }
    // and the audit log says why
    const admin = await new Api(second!.url).login(ADMIN.username, ADMIN.password);
    const ends = await admin.get(
      `/api/admin/audit?action=session.end&target=${before.sessions.lost}`,
    );
    expect(ends.body).toHaveLength(1);
    expect(ends.body[0]).toMatchObject({
      actor: 'system',
      detail: { reason: 'desktop lost while the server was down' },
    });
  });

  it('stops the leftover Xvnc no row accounts for, and leaves no orphan Xvnc', async () => {
    expect(alive(before.leftover.xvncPid)).toBe(false);
    expect(alive(before.leftover.sessionPid)).toBe(false);
    await until(
      () => processesUsing(path.dirname(before.leftover.socket)).length === 0,
      10_000,
      'no process left using the leftover desktop',
    );
    expect(fs.existsSync(path.dirname(before.leftover.socket))).toBe(false);
    const rows = await db()
      .selectFrom('desktops')
      .select(['id', 'handle'])
      .where('handle', 'is not', null)
      .execute();
    const known = rows.map((r) => handleOf(r).xvncPid).sort((a, b) => a - b);
    expect(known).toEqual(
      [before.pids.active, before.pids.disc, before.pids.spare].sort((a, b) => a - b),
    );
    expect(xvncUnder(dirs.runDir)).toEqual(known);
  });

  it('no live session points at a dead or missing desktop', async () => {
    const live = await db()
      .selectFrom('sessions as s')
      .leftJoin('desktops as d', 'd.id', 's.desktop_id')
      .select(['s.id', 'd.id as desktopId', 'd.handle'])
      .where('s.state', '<>', 'ended')
      .execute();
    expect(live.map((s) => s.id).sort()).toEqual(
      [before.sessions.active, before.sessions.disc].sort(),
    );
    for (const s of live) {
      expect(s.desktopId).not.toBeNull();
      expect(alive(handleOf(s).xvncPid)).toBe(true);
    }
  });

  it('users reconnect to their own desktops (sign-ins survive the restart too)', async () => {
    const url = second!.url;
    const as = (k: keyof Before['users']) => {
      const a = new Api(url);
      a.cookie = before.users[k].cookie;
      return a;
    };
    for (const k of ['active', 'disc'] as const) {
      const r = await as(k).post(`/api/pools/${before.floating}/connect`);
      expect(r.status, k).toBe(200);
      expect(r.body, k).toEqual({
        sessionId: before.sessions[k],
        desktopId: before.desktops[k],
        resumed: true,
      });
      // and the re-adopted desktop streams again
      await viewers.attached(url, before.users[k].cookie, before.sessions[k]);
      await until(
        async () => (await session(before.sessions[k])).state === 'active',
        10_000,
        `${k} to be active again`,
      );
    }
    // dedicated owners get their own desktop back, started again
    for (const k of ['rest', 'dedLost'] as const) {
      const r = await as(k).post(`/api/pools/${before.dedicated}/connect`);
      expect(r.status, k).toBe(200);
      expect(r.body.desktopId, k).toBe(before.desktops[k]);
      expect(r.body.resumed, k).toBe(false);
      const d = await desktop(before.desktops[k]);
      expect(d?.state).toBe('in-use');
      expect(alive(handleOf(d!).xvncPid)).toBe(true);
    }
    await until(
      () =>
        fs.readFileSync(path.join(before.handles.dedLost.home, 'starts'), 'utf8') ===
        'started\nstarted\n',
      10_000,
      'the dedicated desktop to start again in its kept home',
    );
    // the user whose floating desktop died gets a fresh one
    const r = await as('lost').post(`/api/pools/${before.floating}/connect`);
    expect(r.status).toBe(200);
    expect(r.body.resumed).toBe(false);
    expect(r.body.desktopId).not.toBe(before.desktops.lost);
  });
});
