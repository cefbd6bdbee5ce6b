/**
 * Video mode at the gateway: the attach's video capability and the `videoError` report are
 * validated like every event (a bad one gets BAD_EVENT and changes nothing), and a viewer
 * that reports a decoder failure keeps its socket and its frames. Real server, real Xvnc.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Socket } from 'socket.io-client';
import { ADMIN, Api, startServer, testConfig, until, type TestServer } from '../helpers/server.js';
import { attach, connected, receiveFrames, Viewers } from '../helpers/viewer.js';

describe('gateway: video capability and decoder failures', () => {
  let t: TestServer;
  let cookie = '';
  let sessionId = '';
  const viewers = new Viewers();
  const nextError = (s: Socket) =>
    new Promise<{ code: string; message: string }>((resolve) => s.once('error', resolve));

  beforeAll(async () => {
    t = await startServer(testConfig({ DEFAULT_GEOMETRY: '640x480' }));
    const a = await new Api(t.url).login(ADMIN.username, ADMIN.password);
    cookie = a.cookie;
    const pools = (await a.get('/api/desktops')).body as { poolId: string }[];
    sessionId = (await a.post(`/api/pools/${pools[0]!.poolId}/connect`)).body.sessionId;
  });

  afterAll(async () => {
    viewers.closeAll();
    const a = await new Api(t.url).login(ADMIN.username, ADMIN.password);
    await a.post(`/api/sessions/${sessionId}/logoff`);
    await t.close();
  });

  it('refuses codecs it does not know, and takes the ones it does', async () => {
    const s = viewers.open(t.url, { cookie });
    await connected(s);
    expect(await attach(s, { sessionId, video: ['theora'] })).toMatchObject({
      ok: false,
      code: 'BAD_EVENT',
    });
    expect(await attach(s, { sessionId, video: 'avc1' })).toMatchObject({
      ok: false,
      code: 'BAD_EVENT',
    });
    expect(await attach(s, { sessionId, video: ['avc1'] })).toMatchObject({ ok: true });
  });

  it('answers a malformed videoError with BAD_EVENT; a valid one leaves the viewer its frames', async () => {
    // untyped: this test sends payloads the protocol does not have
    const s: Socket = viewers.open(t.url, { cookie });
    await connected(s);
    const frames = receiveFrames(s);
    expect(await attach(s, { sessionId, video: ['avc1'] })).toMatchObject({ ok: true });
    let e = nextError(s);
    s.emit('videoError', { regionId: 256, reason: 'x' });
    expect(await e).toMatchObject({ code: 'BAD_EVENT' });
    e = nextError(s);
    s.emit('videoError', { regionId: 0, reason: 'x'.repeat(501) });
    expect(await e).toMatchObject({ code: 'BAD_EVENT' });
    e = nextError(s);
    s.emit('videoError', { regionId: 0 });
    expect(await e).toMatchObject({ code: 'BAD_EVENT' });
    await until(() => frames.length > 0, 15_000, 'the first frame');
    s.emit('videoError', { regionId: 0, reason: 'EncodingError: Decoding error.' });
    // still attached: a repaint asked for afterwards arrives as an ordinary keyframe
    const before = frames.length;
    s.emit('refresh');
    await until(() => frames.slice(before).some((f) => f.keyframe), 15_000, 'a keyframe');
    expect(s.connected).toBe(true);
  });
});
