/**
 * Per-viewer pacing with a real Xvnc: a viewer that stops acknowledging frames holds at most
 * MAX_FRAMES_IN_FLIGHT frames and a damage grid — its memory does not grow — and a second
 * viewer of the same desktop keeps getting frames at full pace.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { desktopHandle, xInvocation } from '../helpers/desktops.js';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import { ADMIN, Api, startServer, testConfig, until, type TestServer } from '../helpers/server.js';
import { attach, connected, receiveFrames, Viewers } from '../helpers/viewer.js';

const run = promisify(execFile);

describe('a stalled viewer', () => {
  let t: TestServer;
  let api: Api;
  let sessionId = '';
  let desktop: XvncHandle;
  const viewers = new Viewers();

  const viewer = async (ack: boolean) => {
    const s = viewers.open(t.url, { cookie: api.cookie });
    const frames = receiveFrames(s, { ack });
    await connected(s);
    const res = await attach(s, { sessionId });
    expect(res.ok).toBe(true);
    return { s, frames };
  };

  beforeAll(async () => {
    t = await startServer(testConfig({ DEFAULT_GEOMETRY: '800x600', MAX_FRAMES_IN_FLIGHT: '2' }));
    api = await new Api(t.url).login(ADMIN.username, ADMIN.password);
    const pools = (await api.get('/api/desktops')).body as { poolId: string }[];
    const c = await api.post(`/api/pools/${pools[0]!.poolId}/connect`);
    sessionId = c.body.sessionId;
    desktop = await desktopHandle(t, c.body.desktopId);
  });

  afterAll(async () => {
    viewers.closeAll();
    await api.post(`/api/sessions/${sessionId}/logoff`);
    await t.close();
  });

  it('stays bounded and does not slow the other viewer', async () => {
    const stalled = await viewer(false);
    const live = await viewer(true);
    await until(() => live.frames.length > 0 && stalled.frames.length > 0, 10_000, 'first frames');
    const stream = t.server.gateway.streams.get(
      (await t.server.broker.session(sessionId))!.desktop_id,
    )!;
    // continuous change: the root window colour cycles as fast as xsetroot runs
    const heapBefore = process.memoryUsage().heapUsed;
    const liveBefore = live.frames.length;
    const started = Date.now();
    let i = 0;
    while (Date.now() - started < 4000) {
      const c = (i++ * 0x0f1f2f) & 0xffffff;
      const x = xInvocation(desktop, ['xsetroot', '-solid', `#${c.toString(16).padStart(6, '0')}`]);
      await run(x.file, x.args, { env: x.env });
    }
    const liveFrames = live.frames.length - liveBefore;
    expect(i).toBeGreaterThan(10);
    // the stalled viewer got its first frames and then nothing: at most 2 in flight
    expect(stalled.frames.length).toBeLessThanOrEqual(2);
    // the live viewer kept up with the changes
    expect(liveFrames).toBeGreaterThanOrEqual(Math.min(i, 20) / 2);
    // what the server holds for the stalled viewer is its damage grid, nothing queued
    const viewers = [...stream.viewers];
    expect(viewers).toHaveLength(2);
    const grid = viewers.map((v) => v.dirty.cells.byteLength);
    expect(Math.max(...grid)).toBeLessThanOrEqual(Math.ceil(800 / 16) * Math.ceil(600 / 16));
    // socket.io's write buffer for the stalled socket is not growing either
    const engine = [...t.server.gateway.io.of('/').sockets.values()].map(
      (s) => (s.conn as unknown as { writeBuffer: unknown[] }).writeBuffer.length,
    );
    expect(Math.max(...engine)).toBeLessThanOrEqual(4);
    if (global.gc) global.gc();
    const grown = process.memoryUsage().heapUsed - heapBefore;
    expect(grown).toBeLessThan(64 * 1024 * 1024);
    console.log(
      `xsetroot changes: ${i}, live viewer frames: ${liveFrames}, stalled viewer frames: ${stalled.frames.length}, heap delta ${(grown / 1048576).toFixed(1)} MiB`,
    );
  });
});
