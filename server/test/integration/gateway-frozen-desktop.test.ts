/**
 * A frozen desktop (its Xvnc stopped with SIGSTOP) never made it back: the gateway gave up
 * re-attaching after five tries (~150 s with the real timings) and marked the session
 * disconnected while the user watched. Now it keeps trying with capped backoff while the
 * desktop lives, keeps the session active while a viewer waits, tells the viewer about every
 * try, and recovers by itself after SIGCONT. The timings are shortened through the gateway's
 * options (keepalive, connect timeout, backoff) so the test runs well past the old give-up
 * point in seconds instead of minutes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionStatusMsg } from '@vdi/shared';
import { alive, desktopHandle, expectNoXvncLeft, startXvncServer } from '../helpers/desktops.js';
import { ADMIN, Api, tempDirs, testConfig, until, type TestServer } from '../helpers/server.js';
import {
  attach,
  connected,
  receiveFrames,
  Viewers,
  type ReceivedFrame,
  type ViewerSocket,
} from '../helpers/viewer.js';

const FIRST_DISPLAY = 640;
/** the gateway's backoff here; the last one repeats */
const DELAYS_MS = [50, 100, 200, 400];
/** the old schedule gave up after this many tries */
const OLD_TRIES = 5;

interface Watched {
  socket: ViewerSocket;
  frames: ReceivedFrame[];
  statuses: SessionStatusMsg[];
}

describe('a frozen desktop (SIGSTOP) comes back by itself', () => {
  const dirs = tempDirs('vdifz');
  const viewers = new Viewers();
  let ts: TestServer;
  let api: Api;
  let sessionId = '';
  let desktopId = '';

  const sessionState = async () => (await ts.server.broker.session(sessionId))?.state;

  async function watch(): Promise<Watched> {
    const socket = viewers.open(ts.url, { cookie: api.cookie });
    const frames = receiveFrames(socket);
    const statuses: SessionStatusMsg[] = [];
    socket.on('session', (m) => statuses.push(m));
    await connected(socket);
    const r = await attach(socket, { sessionId }, 15_000);
    expect(r.ok, JSON.stringify(r)).toBe(true);
    await until(() => frames.length > 0, 10_000, 'first frame');
    return { socket, frames, statuses };
  }

  const retries = (w: Watched) =>
    w.statuses.filter((m) => m.state === 'desktop-unresponsive' && m.retry);

  beforeAll(async () => {
    ts = await startXvncServer(
      testConfig({ DEFAULT_GEOMETRY: '320x240', BROKER_TICK_MS: '1000' }, dirs),
      FIRST_DISPLAY,
      {
        gateway: {
          reattachDelaysMs: DELAYS_MS,
          streams: { rfb: { keepaliveMs: 400, connectTimeoutMs: 800 } },
        },
      },
    );
    api = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
    const pools = (await api.get('/api/desktops')).body as { poolId: string }[];
    const c = await api.post(`/api/pools/${pools[0]!.poolId}/connect`);
    expect(c.status, JSON.stringify(c.body)).toBe(200);
    sessionId = c.body.sessionId;
    desktopId = c.body.desktopId;
  });

  afterAll(async () => {
    viewers.closeAll();
    if (ts) {
      const h = await ts.server.broker.desktop(desktopId);
      if (h?.handle) {
        const pid = (h.handle as { xvncPid: number }).xvncPid;
        if (alive(pid)) process.kill(pid, 'SIGCONT');
      }
      await api.post(`/api/sessions/${sessionId}/logoff`);
      await ts.server.broker.tick();
      await ts.close();
    }
    expectNoXvncLeft(dirs);
  });

  it('keeps trying past the old give-up point, the session stays active, and frames resume after SIGCONT', async () => {
    const v = await watch();
    const { xvncPid } = await desktopHandle(ts, desktopId);
    process.kill(xvncPid, 'SIGSTOP');
    try {
      await until(
        () => v.statuses.some((m) => m.state === 'desktop-lost'),
        10_000,
        'the viewer told the link was lost',
      );
      // well past the five tries after which the gateway used to give up for good
      await until(() => retries(v).length >= OLD_TRIES + 3, 60_000, 'tries past the old limit');
      const tries = retries(v).map((m) => m.retry!);
      expect(tries.map((t) => t.attempt)).toEqual(tries.map((_, i) => i + 1));
      // backoff that grows, then stays at its cap
      expect(tries.map((t) => t.inMs).slice(0, DELAYS_MS.length)).toEqual([
        ...DELAYS_MS.slice(1),
        DELAYS_MS.at(-1),
      ]);
      expect(Math.max(...tries.map((t) => t.inMs))).toBe(DELAYS_MS.at(-1));
      expect(retries(v)[0]!.reason).toBeTruthy();
      // someone is watching and waiting: not "disconnected"
      expect(await sessionState()).toBe('active');
      expect(v.socket.connected).toBe(true);
    } finally {
      process.kill(xvncPid, 'SIGCONT');
    }
    const keyframes = v.frames.filter((f) => f.keyframe).length;
    await until(
      () => v.frames.filter((f) => f.keyframe).length > keyframes,
      20_000,
      'a keyframe after SIGCONT',
    );
    await until(() => v.statuses.at(-1)?.state === 'active', 10_000, 'told it is active again');
    expect(await sessionState()).toBe('active');
    v.socket.close();
    await until(async () => (await sessionState()) === 'disconnected', 10_000, 'disconnected');
  });

  it('the session is marked disconnected only when the last waiting viewer leaves', async () => {
    const a = await watch();
    const b = await watch();
    const { xvncPid } = await desktopHandle(ts, desktopId);
    process.kill(xvncPid, 'SIGSTOP');
    try {
      await until(
        () => retries(a).length > 0 && retries(b).length > 0,
        20_000,
        'both viewers retrying',
      );
      a.socket.close();
      // b is still waiting for the desktop: the session must stay active
      await until(() => retries(b).length >= 3, 20_000, 'b keeps retrying after a left');
      expect(await sessionState()).toBe('active');
      b.socket.close();
      await until(
        async () => (await sessionState()) === 'disconnected',
        10_000,
        'disconnected once nobody waits',
      );
    } finally {
      process.kill(xvncPid, 'SIGCONT');
    }
  });

  it("an administrator's Disconnect and messages reach a viewer that is waiting", async () => {
    const v = await watch();
    const notices: string[] = [];
    v.socket.on('notice', (m) => notices.push(m.text));
    const { xvncPid } = await desktopHandle(ts, desktopId);
    process.kill(xvncPid, 'SIGSTOP');
    try {
      await until(() => retries(v).length > 0, 20_000, 'retrying');
      const m = await api.post(`/api/admin/sessions/${sessionId}/message`, {
        text: 'maintenance soon',
      });
      expect(m.status, JSON.stringify(m.body)).toBeLessThan(300);
      await until(() => notices.includes('maintenance soon'), 5000, 'the notice');
      const closed = new Promise<string>((r) => v.socket.once('disconnect', r));
      expect((await api.post(`/api/admin/sessions/${sessionId}/disconnect`)).status).toBe(204);
      expect(await closed).toBe('io server disconnect');
      expect(await sessionState()).toBe('disconnected');
      // and it does not come back by itself behind the administrator's back
      const n = retries(v).length;
      expect(v.socket.connected).toBe(false);
      expect(retries(v).length).toBe(n);
    } finally {
      process.kill(xvncPid, 'SIGCONT');
    }
  });

  it('a frozen desktop that dies ends the tries: the viewer hears the session ended', async () => {
    const v = await watch();
    const { xvncPid } = await desktopHandle(ts, desktopId);
    process.kill(xvncPid, 'SIGSTOP');
    await until(() => retries(v).length > 0, 20_000, 'retrying');
    process.kill(xvncPid, 'SIGKILL');
    await until(() => v.statuses.some((m) => m.state === 'ended'), 30_000, 'session ended');
    expect(await sessionState()).toBe('ended');
    const n = retries(v).length;
    await until(() => !v.socket.connected, 10_000, 'socket closed by the server');
    expect(retries(v).length).toBe(n);
  });
});
