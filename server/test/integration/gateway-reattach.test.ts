/**
 * Viewers survive their desktop's stream going away: after an admin reset of an Xvnc desktop
 * (a new X server) and after the gateway's RFB link to a still-running desktop drops, the
 * same browser socket is attached again by the server and frames resume, without a reload.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io, type Socket } from 'socket.io-client';
import { decodeFrame, vdiParser, type SessionStatusMsg } from '@vdi/shared';
import { ADMIN, Api, startServer, testConfig, until, type TestServer } from '../helpers/server.js';

describe('viewers attach again by themselves', () => {
  let t: TestServer;
  let api: Api;
  let sessionId = '';
  let desktopId = '';
  let socket: Socket;
  const frames: { seq: number; keyframe: boolean }[] = [];
  const states: string[] = [];

  const xvncPid = async () =>
    (JSON.parse((await t.server.broker.desktop(desktopId))!.handle!) as { xvncPid: number })
      .xvncPid;

  beforeAll(async () => {
    t = await startServer(testConfig({ DEFAULT_GEOMETRY: '640x480' }));
    api = await new Api(t.url).login(ADMIN.username, ADMIN.password);
    const pools = (await api.get('/api/desktops')).body as { poolId: string }[];
    const c = await api.post(`/api/pools/${pools[0]!.poolId}/connect`);
    sessionId = c.body.sessionId;
    desktopId = c.body.desktopId;
    socket = io(t.url, {
      parser: vdiParser,
      transports: ['websocket'],
      extraHeaders: { cookie: api.cookie },
      reconnection: false,
      forceNew: true,
    });
    socket.on('frame', (buf: ArrayBuffer) => {
      const f = decodeFrame(new Uint8Array(buf));
      frames.push({ seq: f.seq, keyframe: (f.flags & 1) === 1 });
      socket.emit('ack', { seq: f.seq });
    });
    socket.on('session', (m: SessionStatusMsg) => states.push(m.state));
    await new Promise<void>((r) => socket.once('connect', () => r()));
    const res = await new Promise<{ ok: boolean }>((r) => socket.emit('attach', { sessionId }, r));
    expect(res.ok).toBe(true);
    await until(() => frames.length > 0, 10_000, 'first frame');
  });

  afterAll(async () => {
    socket?.close();
    await api.post(`/api/sessions/${sessionId}/logoff`);
    await t.close();
  });

  it('after an admin reset of the desktop', async () => {
    const pid = await xvncPid();
    const keyframes = frames.filter((f) => f.keyframe).length;
    expect((await api.post(`/api/admin/sessions/${sessionId}/reset`)).status).toBe(204);
    expect(await xvncPid()).not.toBe(pid);
    await until(
      () => frames.filter((f) => f.keyframe).length > keyframes,
      15_000,
      'a keyframe from the new desktop',
    );
    expect(socket.connected).toBe(true);
    expect(states.at(-1)).toBe('active');
    expect((await t.server.broker.session(sessionId))!.state).toBe('active');
  });

  it('after the RFB link to a running desktop drops', async () => {
    const keyframes = frames.filter((f) => f.keyframe).length;
    const stream = t.server.gateway.streams.get(desktopId)!;
    stream.link!.close('link dropped by the test');
    await until(() => states.includes('desktop-lost'), 10_000, 'viewer told the link was lost');
    await until(() => frames.filter((f) => f.keyframe).length > keyframes, 15_000, 'frames again');
    expect(states.at(-1)).toBe('active');
    expect(socket.connected).toBe(true);
  });
});
