/**
 * The gateway's side of liveness and of a graceful stop (issue 8, "Faults found when tried"):
 * heartbeats are answered; a viewer behind a silent network black hole (a real loopback TCP
 * proxy that stops forwarding) is dropped after the viewer timeout, not Socket.IO's ~45 s,
 * while an idle viewer that answers Socket.IO's pings is kept; and close() drains: /readyz
 * answers 503 at once, new viewers are refused, connected ones are told the server is
 * restarting, and their transports close without a "stay away" disconnect packet.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServerStatusMsg } from '@vdi/shared';
import {
  alive,
  desktopHandle,
  expectNoXvncLeft,
  killLeftDesktop,
  type LeftDesktop,
  startXvncServer,
} from '../helpers/desktops.js';
import { ADMIN, Api, tempDirs, testConfig, until, type TestServer } from '../helpers/server.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { attach, connected, disconnected, receiveFrames, Viewers } from '../helpers/viewer.js';

const FIRST_DISPLAY = 660;
const VIEWER_TIMEOUT_MS = 2000;

describe('viewer liveness and drain', () => {
  const dirs = tempDirs('vdilv');
  const viewers = new Viewers();
  let ts: TestServer;
  let api: Api;
  let sessionId = '';
  let desktopId = '';
  let proxy: TcpProxy;
  const pids: number[] = [];
  /** the desktop's handle: its cgroup holds what the pids do not (slirp4netns) */
  let left: LeftDesktop | undefined;

  const sessionState = async () => (await ts.server.broker.session(sessionId))?.state;
  const socketCount = () => ts.server.gateway.io.of('/').sockets.size;

  beforeAll(async () => {
    ts = await startXvncServer(testConfig({ DEFAULT_GEOMETRY: '320x240' }, dirs), FIRST_DISPLAY, {
      gateway: { viewerTimeoutMs: VIEWER_TIMEOUT_MS },
    });
    api = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
    const pools = (await api.get('/api/desktops')).body as { poolId: string }[];
    const c = await api.post(`/api/pools/${pools[0]!.poolId}/connect`);
    expect(c.status, JSON.stringify(c.body)).toBe(200);
    sessionId = c.body.sessionId;
    desktopId = c.body.desktopId;
    const h = await desktopHandle(ts, desktopId);
    left = h;
    // the sandbox's supervisor and its PID namespace's first process: killing them ends it all
    pids.push(
      ...[h.supervisorPid, h.initPid, h.xvncPid].filter((p): p is number => p !== undefined),
    );
    proxy = new TcpProxy(Number(new URL(ts.url).port));
    await proxy.listen();
  });

  afterAll(async () => {
    viewers.closeAll();
    await proxy?.close();
    await ts?.close();
    // the drain test leaves the desktop running on purpose (desktops outlive the server)
    await killLeftDesktop(left);
    await until(() => pids.every((p) => !alive(p)), 10_000, 'desktop processes gone');
    expectNoXvncLeft(dirs);
  });

  it('answers a heartbeat at once; a heartbeat without a callback is a clear error', async () => {
    const s = viewers.open(ts.url, { cookie: api.cookie });
    await connected(s);
    await s.timeout(2000).emitWithAck('heartbeat');
    const err = new Promise<{ code: string; message: string }>((r) => s.once('error', r));
    (s as unknown as { emit(e: string): void }).emit('heartbeat');
    expect(await err).toMatchObject({ code: 'BAD_EVENT' });
    expect(s.connected).toBe(true);
    s.close();
  });

  it('drops a viewer behind a black hole after the viewer timeout; the session goes disconnected', async () => {
    const s = viewers.open(`http://127.0.0.1:${proxy.port}`, { cookie: api.cookie });
    const frames = receiveFrames(s);
    await connected(s);
    expect((await attach(s, { sessionId }, 15_000)).ok).toBe(true);
    await until(() => frames.length > 0, 10_000, 'first frame');
    expect(await sessionState()).toBe('active');
    const before = socketCount();

    proxy.blackhole();
    const t0 = Date.now();
    await until(() => socketCount() < before, 15_000, 'the server to drop the silent viewer');
    const ms = Date.now() - t0;
    console.log(`silent viewer dropped after ${ms} ms (timeout ${VIEWER_TIMEOUT_MS} ms)`);
    expect(ms).toBeGreaterThanOrEqual(VIEWER_TIMEOUT_MS * 0.75);
    expect(ms).toBeLessThan(VIEWER_TIMEOUT_MS * 2.5);
    await until(async () => (await sessionState()) === 'disconnected', 10_000, 'disconnected');
    proxy.restore();
    s.close();
  });

  it('keeps an idle viewer that only answers Socket.IO pings', async () => {
    const s = viewers.open(ts.url, { cookie: api.cookie });
    receiveFrames(s);
    let pings = 0;
    s.io.on('ping', () => pings++);
    await connected(s);
    expect((await attach(s, { sessionId }, 15_000)).ok).toBe(true);
    // three whole viewer timeouts of pings (one every quarter of it) and still there
    await until(() => pings >= 12, 20_000, 'a dozen pings');
    expect(s.connected).toBe(true);
    expect(await sessionState()).toBe('active');
    s.close();
  });

  it('close() drains: readyz 503 at once, new viewers refused, viewers told to come back', async () => {
    const s = viewers.open(ts.url, { cookie: api.cookie });
    receiveFrames(s);
    const told = new Promise<ServerStatusMsg>((r) => s.once('server', r));
    const gone = disconnected(s);
    await connected(s);
    expect((await attach(s, { sessionId }, 15_000)).ok).toBe(true);
    expect((await fetch(`${ts.url}/readyz`)).status).toBe(200);

    const closing = ts.server.close({ drainMs: 1500 });
    const ready = await fetch(`${ts.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ ok: false, draining: true });
    const msg = await told;
    expect(msg.state).toBe('restarting');
    expect(msg.retryAfterMs).toBeGreaterThanOrEqual(1000);
    expect(msg.retryAfterMs).toBeLessThanOrEqual(3000);
    // a new viewer during the drain is refused at the handshake
    const late = viewers.open(ts.url, { cookie: api.cookie });
    await expect(connected(late)).rejects.toBeTruthy();

    await closing;
    // closed like a crash from the viewer's side: it may (and the browser does) reconnect
    expect(await gone).toBe('transport close');
    // the desktop outlives the server
    expect(pids.every(alive)).toBe(true);
  });
});
