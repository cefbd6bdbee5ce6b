/**
 * Bad input from a browser gets a clear error and changes nothing: the socket that sent it,
 * the other sessions and the process keep going. Real server, real Xvnc desktops.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Socket } from 'socket.io-client';
import { MAX_CLIENT_MESSAGE_BYTES, MAX_CLIPBOARD_CHARS } from '@vdi/shared';
import { ADMIN, Api, startServer, testConfig, until, type TestServer } from '../helpers/server.js';
import { attach, connected, receiveFrames, Viewers } from '../helpers/viewer.js';

describe('gateway input validation', () => {
  let t: TestServer;
  const admin = () => new Api(t.url).login(ADMIN.username, ADMIN.password);
  let cookie = '';
  let sessionId = '';
  const viewers = new Viewers();

  /** untyped: these tests send events and payloads the protocol does not have */
  const open = (opts: { cookie?: string; origin?: string } = {}): Socket => {
    const headers: Record<string, string> = {};
    if (opts.cookie) headers.cookie = opts.cookie;
    if (opts.origin) headers.origin = opts.origin;
    return viewers.open(t.url, headers);
  };
  const nextError = (s: Socket) =>
    new Promise<{ code: string; message: string }>((resolve) => s.once('error', resolve));

  beforeAll(async () => {
    t = await startServer(testConfig({ DEFAULT_GEOMETRY: '640x480' }));
    const a = await admin();
    cookie = a.cookie;
    const pools = (await a.get('/api/desktops')).body as { poolId: string }[];
    const c = await a.post(`/api/pools/${pools[0]!.poolId}/connect`);
    sessionId = c.body.sessionId;
  });

  afterAll(async () => {
    viewers.closeAll();
    const a = await admin();
    await a.post(`/api/sessions/${sessionId}/logoff`);
    await t.close();
  });

  it('refuses sockets without a signed-in session', async () => {
    await expect(connected(open())).rejects.toThrow(/unauthorized/);
  });

  it('refuses cross-origin handshakes', async () => {
    await expect(connected(open({ cookie, origin: 'http://evil.example' }))).rejects.toThrow();
    await connected(open({ cookie, origin: t.url })); // same origin is fine
  });

  it('answers malformed and unknown events with an error and keeps the socket', async () => {
    const s = open({ cookie });
    await connected(s);
    expect(await attach(s, { sessionId: 42 })).toMatchObject({ ok: false, code: 'BAD_EVENT' });
    expect(await attach(s, { sessionId, extra: true })).toMatchObject({
      ok: false,
      code: 'BAD_EVENT',
    });
    expect(await attach(s, { sessionId: 'no-such-session' })).toMatchObject({
      ok: false,
      code: 'SESSION_NOT_FOUND',
    });
    let e = nextError(s);
    s.emit('key', { keysym: 0x61, down: true });
    expect(await e).toMatchObject({ code: 'NOT_ATTACHED' });
    e = nextError(s);
    s.emit('launch-missiles', { now: true });
    expect(await e).toMatchObject({ code: 'UNKNOWN_EVENT' });
    e = nextError(s);
    s.emit('pointer', { x: -5, y: 10, buttons: 0 });
    expect((await e).code).toBe('BAD_EVENT');
    e = nextError(s);
    s.emit('key', { keysym: 'a', down: 'yes' });
    expect(await e).toMatchObject({ code: 'BAD_EVENT', message: expect.stringContaining('key') });
    e = nextError(s);
    s.emit('clipboard', { text: 'x'.repeat(MAX_CLIPBOARD_CHARS + 1) });
    expect((await e).code).toBe('BAD_EVENT');
    expect(s.connected).toBe(true);
  });

  it('closes a socket that sends an oversized message, and nothing else', async () => {
    const good = viewers.open(t.url, { cookie });
    await connected(good);
    const frames = receiveFrames(good);
    expect(await attach(good, { sessionId })).toMatchObject({ ok: true });
    await until(() => frames.length > 0, 10_000, 'first frame');

    const bad = open({ cookie });
    await connected(bad);
    const closed = new Promise<string>((r) => bad.once('disconnect', r));
    bad.emit('clipboard', { text: 'y'.repeat(MAX_CLIENT_MESSAGE_BYTES + 10) });
    expect(await closed).toMatch(/transport/);

    // the good viewer still works: a key press changes the desktop and a new frame arrives
    const before = frames.length;
    for (const k of [0x68, 0x69]) {
      good.emit('key', { keysym: k, down: true });
      good.emit('key', { keysym: k, down: false });
    }
    good.emit('pointer', { x: 100, y: 100, buttons: 0 });
    await until(() => frames.length > before, 10_000, 'frames after the bad socket was closed');
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
  });

  it('keeps the draw times viewers report with their acks, for frames they were sent', async () => {
    const renderCount = async () => {
      const text = await (await fetch(`${t.url}/metrics`)).text();
      return Number(/^vdi_frame_render_seconds_count (\d+)$/m.exec(text)?.[1] ?? NaN);
    };
    const s = open({ cookie });
    await connected(s);
    const frames = receiveFrames(s, { ack: false });
    expect(await attach(s, { sessionId })).toMatchObject({ ok: true });
    await until(() => frames.length > 0, 10_000, 'first frame');
    const before = await renderCount();
    s.emit('ack', { seq: (frames[0]!.seq + 1000) >>> 0, renderMs: 5 }); // never sent
    s.emit('ack', { seq: frames[0]!.seq, renderMs: 12.5 });
    s.emit('ack', { seq: frames[0]!.seq, renderMs: 12.5 }); // again: already acknowledged
    await until(async () => (await renderCount()) > before, 5000, 'the draw time counted');
    // the ack after them all has been handled too: only the real one counted
    const e = nextError(s);
    s.emit('launch-missiles');
    await e;
    expect(await renderCount()).toBe(before + 1);
  });

  it("does not let a user attach to, or shadow, someone else's session", async () => {
    const a = await admin();
    await a.post('/api/admin/users', {
      username: 'mallory',
      password: 'mallory-pass-1',
      role: 'user',
    });
    const m = await new Api(t.url).login('mallory', 'mallory-pass-1');
    const s = open({ cookie: m.cookie });
    await connected(s);
    expect(await attach(s, { sessionId })).toMatchObject({ ok: false, code: 'FORBIDDEN' });
    expect(await attach(s, { sessionId, shadow: true })).toMatchObject({
      ok: false,
      code: 'FORBIDDEN',
    });
  });
});
