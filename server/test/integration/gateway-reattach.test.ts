/**
 * Viewers survive their desktop's stream going away: after an admin reset of an Xvnc desktop
 * (a new X server) and after the gateway's RFB link to a still-running desktop drops, the
 * same browser socket is attached again by the server and frames resume, without a reload.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { desktopHandle } from '../helpers/desktops.js';
import { ADMIN, Api, startServer, testConfig, until, type TestServer } from '../helpers/server.js';
import {
  attach,
  connected,
  receiveFrames,
  Viewers,
  type ReceivedFrame,
  type ViewerSocket,
} from '../helpers/viewer.js';

describe('viewers attach again by themselves', () => {
  let t: TestServer;
  let api: Api;
  let sessionId = '';
  let desktopId = '';
  const viewers = new Viewers();
  let socket: ViewerSocket;
  let frames: ReceivedFrame[] = [];
  const states: string[] = [];

  const xvncPid = async () => (await desktopHandle(t, desktopId)).xvncPid;

  beforeAll(async () => {
    t = await startServer(testConfig({ DEFAULT_GEOMETRY: '640x480' }));
    api = await new Api(t.url).login(ADMIN.username, ADMIN.password);
    const pools = (await api.get('/api/desktops')).body as { poolId: string }[];
    const c = await api.post(`/api/pools/${pools[0]!.poolId}/connect`);
    sessionId = c.body.sessionId;
    desktopId = c.body.desktopId;
    socket = viewers.open(t.url, { cookie: api.cookie });
    frames = receiveFrames(socket);
    socket.on('session', (m) => states.push(m.state));
    await connected(socket);
    const res = await attach(socket, { sessionId });
    expect(res.ok).toBe(true);
    await until(() => frames.length > 0, 10_000, 'first frame');
  });

  afterAll(async () => {
    viewers.closeAll();
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
    // the server's own RFB connection, closed under the stream as a network fault would
    const stream = t.server.gateway.streams.get(desktopId)!;
    (stream as unknown as { link: { close(reason: string): void } }).link.close(
      'link dropped by the test',
    );
    await until(() => states.includes('desktop-lost'), 10_000, 'viewer told the link was lost');
    await until(() => frames.filter((f) => f.keyframe).length > keyframes, 15_000, 'frames again');
    expect(states.at(-1)).toBe('active');
    expect(socket.connected).toBe(true);
  });
});
