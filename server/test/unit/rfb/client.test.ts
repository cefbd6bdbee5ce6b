import { constants, deflateSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RfbClient } from '../../../src/rfb/client.js';
import type { RfbClientOptions, RfbCloseEvent } from '../../../src/rfb/client-api.js';
import { Encoding, FenceFlag } from '../../../src/rfb/constants.js';
import { EXTENDED_CLIPBOARD_ENCODING } from '../../../src/rfb/extended-clipboard.js';
import { RfbError } from '../../../src/rfb/errors.js';
import { DEFAULT_RFB_LIMITS } from '../../../src/rfb/types.js';
import { vncAuthResponse } from '../../../src/rfb/vnc-auth.js';
import { FakeRfbServer, waitFor, type FakeConnection } from './helpers/fake-server.js';
import { tight, zrle } from './helpers/codec-wire.js';
import * as w from './helpers/server-wire.js';
import { FramebufferModel } from './helpers/sinks.js';

let server: FakeRfbServer;
const clients: RfbClient[] = [];

beforeEach(async () => {
  server = await FakeRfbServer.start();
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close('test over');
  await server.close();
});

interface Harness {
  client: RfbClient;
  fb: FramebufferModel;
  closes: RfbCloseEvent[];
  errors: RfbError[];
}

function makeClient(options: Partial<RfbClientOptions> = {}): Harness {
  const fb = new FramebufferModel();
  const client = new RfbClient({ endpoint: server.endpoint, sink: fb, keepaliveMs: 0, ...options });
  clients.push(client);
  const closes: RfbCloseEvent[] = [];
  const errors: RfbError[] = [];
  client.on('close', (e) => closes.push(e));
  client.on('error', (e) => errors.push(e));
  return { client, fb, closes, errors };
}

/** Connect a client, run a None handshake and deliver the first full frame. */
async function connected(
  width = 64,
  height = 48,
  options: Partial<RfbClientOptions> = {},
): Promise<Harness & { conn: FakeConnection; encodings: number[] }> {
  const h = makeClient(options);
  const ready = h.client.connect();
  const conn = await server.accept();
  const { encodings } = await conn.handshake(width, height);
  conn.write(w.update([w.raw(0, 0, width, height, w.solid(width, height, 1, 2, 3))]));
  await ready;
  return { ...h, conn, encodings };
}

describe('ProtocolVersion and Security', () => {
  it('connects with None and reports what it learned', async () => {
    const h = makeClient();
    const ready = h.client.connect();
    const conn = await server.accept();
    conn.write(w.version());
    expect((await conn.read(12)).toString()).toBe('RFB 003.008\n');
    conn.write(w.securityTypes(1, 2));
    expect([...(await conn.read(1))]).toEqual([1]);
    conn.write(w.securityResult(0));
    expect([...(await conn.read(1))]).toEqual([1]); // ClientInit: shared
    conn.write(w.serverInit(64, 48, 'my desk'));
    conn.write(w.update([w.raw(0, 0, 64, 48, w.solid(64, 48, 9, 9, 9))]));
    const info = await ready;
    expect(info).toEqual({
      width: 64,
      height: 48,
      name: 'my desk',
      protocolVersion: '3.8',
      security: 'none',
      continuousUpdates: false,
      fence: false,
      extendedDesktopSize: false,
    });
    expect(h.client.phase).toBe('ready');
    expect(h.fb.fullyCovered()).toBe(true);
  });

  it('authenticates with VNC auth', async () => {
    const h = makeClient({ endpoint: { ...server.endpoint, password: 'sesame' } });
    const ready = h.client.connect();
    const conn = await server.accept();
    conn.write(w.version(), w.securityTypes(2));
    await conn.read(12);
    expect([...(await conn.read(1))]).toEqual([2]);
    const challenge = Buffer.from('fedcba9876543210', 'latin1');
    conn.write(challenge);
    expect(await conn.read(16)).toEqual(vncAuthResponse(challenge, 'sesame'));
    conn.write(w.securityResult(0));
    await conn.read(1);
    conn.write(w.serverInit(8, 8));
    await conn.readUntil('FramebufferUpdateRequest');
    conn.write(w.update([w.raw(0, 0, 8, 8, w.solid(8, 8, 0, 0, 0))]));
    expect((await ready).security).toBe('vnc-auth');
  });

  it('rejects connect() with the server reason when authentication fails', async () => {
    const h = makeClient({ endpoint: { ...server.endpoint, password: 'wrong' } });
    const ready = h.client.connect();
    const conn = await server.accept();
    conn.write(w.version(), w.securityTypes(2), Buffer.alloc(16));
    await conn.read(12 + 1 + 16);
    conn.write(w.securityResult(1), w.reasonString('Authentication failure'));
    await expect(ready).rejects.toMatchObject({
      code: 'auth-failed',
      message: /Authentication failure/,
    });
    expect(h.closes).toEqual([
      { reason: expect.stringMatching(/Authentication failure/), error: expect.any(RfbError) },
    ]);
    expect(h.client.phase).toBe('closed');
  });

  it('connects over TCP too', async () => {
    const tcp = await FakeRfbServer.start('tcp');
    try {
      const h = makeClient({ endpoint: tcp.endpoint });
      const ready = h.client.connect();
      const conn = await tcp.accept();
      await conn.handshake(8, 8);
      conn.write(w.update([w.raw(0, 0, 8, 8, w.solid(8, 8, 1, 1, 1))]));
      expect((await ready).width).toBe(8);
    } finally {
      for (const c of clients.splice(0)) c.close('test over');
      await tcp.close();
    }
  });

  it('speaks 3.3 to a 3.3 server', async () => {
    const h = makeClient();
    const ready = h.client.connect();
    const conn = await server.accept();
    conn.write(w.version('003.003'), w.u32(1));
    expect((await conn.read(12)).toString()).toBe('RFB 003.003\n');
    expect([...(await conn.read(1))]).toEqual([1]); // ClientInit (no type selection in 3.3)
    conn.write(w.serverInit(4, 4));
    await conn.readUntil('FramebufferUpdateRequest');
    conn.write(w.update([w.raw(0, 0, 4, 4, w.solid(4, 4, 0, 0, 0))]));
    expect((await ready).protocolVersion).toBe('3.3');
  });

  it('fails with a clear reason when the server offers no acceptable security type', async () => {
    const h = makeClient();
    const ready = h.client.connect();
    const conn = await server.accept();
    conn.write(w.version(), w.securityTypes(18, 19));
    await expect(ready).rejects.toMatchObject({ code: 'no-acceptable-security' });
    expect(h.closes[0]?.reason).toMatch(/offers only TLS \(18\), VeNCrypt \(19\)/);
  });
});

describe('ServerInit and set-up', () => {
  it('asks for RGBX true colour, the supported encodings, and a full frame', async () => {
    const h = makeClient();
    const ready = h.client.connect();
    const conn = await server.accept();
    conn.write(w.version(), w.securityTypes(1), w.securityResult(0));
    await conn.read(14);
    conn.write(w.serverInit(320, 200));
    const pf = await conn.readMessage();
    expect(pf).toEqual({
      type: 'SetPixelFormat',
      pixelFormat: Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0]),
    });
    expect(await conn.readMessage()).toEqual({
      type: 'SetEncodings',
      encodings: [
        Encoding.CopyRect,
        Encoding.Raw,
        Encoding.DesktopSize,
        Encoding.ExtendedDesktopSize,
        Encoding.Cursor,
        Encoding.LastRect,
        Encoding.ContinuousUpdates,
        Encoding.Fence,
        EXTENDED_CLIPBOARD_ENCODING,
      ],
    });
    expect(await conn.readMessage()).toEqual({
      type: 'FramebufferUpdateRequest',
      incremental: false,
      x: 0,
      y: 0,
      w: 320,
      h: 200,
    });
    expect(h.fb.width).toBe(320);
    conn.write(w.update([w.raw(0, 0, 320, 200, w.solid(320, 200, 0, 0, 0))]));
    await ready;
  });

  it('waits for an update with pixels before it is ready (TigerVNC sends the layout first)', async () => {
    const h = makeClient();
    const ready = h.client.connect();
    const conn = await server.accept();
    await conn.handshake(16, 16);
    conn.write(w.update([w.extendedDesktopSize(0, 0, 16, 16)]));
    await conn.readUntil('FramebufferUpdateRequest'); // the next request, after the layout-only update
    expect(h.client.phase).toBe('initialising');
    conn.write(w.update([w.raw(0, 0, 16, 16, w.solid(16, 16, 5, 5, 5))]));
    expect((await ready).extendedDesktopSize).toBe(true);
  });

  it('leaves Continuous Updates out when they are turned off', async () => {
    const h = makeClient({ continuousUpdates: false });
    void h.client.connect().catch(() => undefined);
    const conn = await server.accept();
    const { encodings } = await conn.handshake();
    expect(encodings).not.toContain(Encoding.ContinuousUpdates);
    expect(encodings).toContain(Encoding.Fence);
  });
});

describe('compressed encodings on remote links', () => {
  it('asks a remote endpoint for Tight and ZRLE first, and decodes what it sends', async () => {
    const fb = new FramebufferModel();
    const client = new RfbClient({
      endpoint: { ...server.endpoint, remote: true },
      sink: fb,
      keepaliveMs: 0,
    });
    clients.push(client);
    const ready = client.connect();
    const conn = await server.accept();
    const { encodings } = await conn.handshake(16, 16);
    expect(encodings.slice(0, 3)).toEqual([Encoding.Tight, Encoding.ZRLE, Encoding.CopyRect]);
    conn.write(w.update([tight.rect(0, 0, 16, 16, tight.fill([7, 8, 9]))]));
    await ready;
    expect(fb.pixel(15, 15)).toEqual([7, 8, 9]);
  });

  it('follows remoteEncodings (ZRLE alone) and refuses Tight then', async () => {
    const fb = new FramebufferModel();
    const client = new RfbClient({
      endpoint: { ...server.endpoint, remote: true },
      sink: fb,
      keepaliveMs: 0,
      remoteEncodings: ['zrle'],
    });
    clients.push(client);
    const closes: RfbCloseEvent[] = [];
    client.on('close', (e) => closes.push(e));
    client.on('error', () => undefined);
    const ready = client.connect();
    const conn = await server.accept();
    const { encodings } = await conn.handshake(16, 16);
    expect(encodings).toContain(Encoding.ZRLE);
    expect(encodings).not.toContain(Encoding.Tight);
    conn.write(w.update([tight.rect(0, 0, 16, 16, tight.fill([7, 8, 9]))]));
    await expect(ready).rejects.toMatchObject({ code: 'unknown-encoding' });
  });

  it('a zip bomb from the server closes only that link, with a clear reason', async () => {
    const fb = new FramebufferModel();
    const client = new RfbClient({
      endpoint: { ...server.endpoint, remote: true },
      sink: fb,
      keepaliveMs: 0,
    });
    clients.push(client);
    const closes: RfbCloseEvent[] = [];
    client.on('close', (e) => closes.push(e));
    client.on('error', () => undefined);
    const ready = client.connect();
    const conn = await server.accept();
    await conn.handshake(16, 16);
    // 1 MiB of zeros in about 1 KiB, for a 16×16 rect that holds at most a few KiB
    const bomb = deflateSync(Buffer.alloc(1024 * 1024), { finishFlush: constants.Z_SYNC_FLUSH });
    conn.write(w.update([zrle.rect(0, 0, 16, 16, bomb)]));
    await expect(ready).rejects.toMatchObject({ code: 'decompressed-too-large' });
    await waitFor(() => closes.length === 1);
    expect(closes[0]?.reason).toMatch(/ZRLE: compressed data inflates to more than/);
    expect(client.phase).toBe('closed');
  });

  it('never asks a local endpoint for them', async () => {
    const h = makeClient();
    void h.client.connect().catch(() => undefined);
    const conn = await server.accept();
    const { encodings } = await conn.handshake();
    expect(encodings).not.toContain(Encoding.Tight);
    expect(encodings).not.toContain(Encoding.ZRLE);
  });
});

describe('FramebufferUpdate flow', () => {
  it('without continuous updates keeps exactly one incremental request in flight', async () => {
    const h = await connected(32, 32);
    const { conn, fb, client } = h;
    // the first update (in connected()) already triggered one incremental request
    for (let i = 1; i <= 3; i++) {
      const { message, before } = await conn.readUntil('FramebufferUpdateRequest');
      expect(before).toEqual([]);
      expect(message).toMatchObject({ incremental: true, x: 0, y: 0, w: 32, h: 32 });
      conn.write(w.update([w.raw(i, i, 1, 1, w.solid(1, 1, i, i, i))]));
      await waitFor(() => fb.updates === i + 1, 2000, `update ${i}`);
    }
    // one more request went out after the last update, and nothing else: a key event is a marker
    client.keyEvent(0x61, true);
    const { message, before } = await conn.readUntil('KeyEvent');
    expect(before).toEqual([
      { type: 'FramebufferUpdateRequest', incremental: true, x: 0, y: 0, w: 32, h: 32 },
    ]);
    expect(message).toEqual({ type: 'KeyEvent', keysym: 0x61, down: true });
    expect(fb.pixel(3, 3)).toEqual([3, 3, 3]);
  });

  it('enables continuous updates when the server answers -313, then sends no requests', async () => {
    const h = makeClient();
    const ready = h.client.connect();
    const conn = await server.accept();
    await conn.handshake(40, 30);
    conn.write(w.endOfContinuousUpdates());
    expect(await conn.readMessage()).toEqual({
      type: 'EnableContinuousUpdates',
      enable: true,
      x: 0,
      y: 0,
      w: 40,
      h: 30,
    });
    conn.write(w.update([w.raw(0, 0, 40, 30, w.solid(40, 30, 1, 1, 1))]));
    const info = await ready;
    expect(info.continuousUpdates).toBe(true);
    // pushed updates get no requests in return
    conn.write(w.update([w.raw(0, 0, 1, 1, w.solid(1, 1, 2, 2, 2))]));
    await waitFor(() => h.fb.updates === 2);
    h.client.keyEvent(0x62, true);
    expect((await conn.readUntil('KeyEvent')).before).toEqual([]);
  });

  it('re-enables continuous updates for the new area after a resize', async () => {
    const h = makeClient();
    const ready = h.client.connect();
    const conn = await server.accept();
    await conn.handshake(40, 30);
    conn.write(w.endOfContinuousUpdates());
    await conn.readMessage();
    conn.write(w.update([w.raw(0, 0, 40, 30, w.solid(40, 30, 1, 1, 1))]));
    await ready;
    conn.write(w.update([w.extendedDesktopSize(0, 0, 80, 60)]));
    expect(await conn.readMessage()).toEqual({
      type: 'EnableContinuousUpdates',
      enable: true,
      x: 0,
      y: 0,
      w: 80,
      h: 60,
    });
    expect(h.client.info).toMatchObject({ width: 80, height: 60 });
    expect(h.fb.width).toBe(80);
  });

  it('falls back to requests when the server stops continuous updates on its own', async () => {
    const h = makeClient();
    const ready = h.client.connect();
    const conn = await server.accept();
    await conn.handshake(10, 10);
    conn.write(w.endOfContinuousUpdates());
    await conn.readMessage();
    conn.write(w.update([w.raw(0, 0, 10, 10, w.solid(10, 10, 1, 1, 1))]));
    await ready;
    conn.write(w.endOfContinuousUpdates());
    expect(await conn.readMessage()).toMatchObject({
      type: 'FramebufferUpdateRequest',
      incremental: true,
    });
    expect(h.client.info?.continuousUpdates).toBe(false);
  });

  it('pause() stops pushing and resume() restarts it', async () => {
    const h = makeClient();
    const ready = h.client.connect();
    const conn = await server.accept();
    await conn.handshake(10, 10);
    conn.write(w.endOfContinuousUpdates());
    await conn.readMessage();
    conn.write(w.update([w.raw(0, 0, 10, 10, w.solid(10, 10, 1, 1, 1))]));
    await ready;
    h.client.pause();
    expect(await conn.readMessage()).toMatchObject({
      type: 'EnableContinuousUpdates',
      enable: false,
    });
    conn.write(w.endOfContinuousUpdates()); // the server's acknowledgement: no fallback request
    h.client.resume();
    expect(await conn.readMessage()).toMatchObject({
      type: 'EnableContinuousUpdates',
      enable: true,
    });
  });

  it('requestFullUpdate() sends a non-incremental request for the whole screen', async () => {
    const { client, conn } = await connected(20, 10, { continuousUpdates: false });
    await conn.readUntil('FramebufferUpdateRequest');
    expect(client.requestFullUpdate()).toBe(true);
    expect(await conn.readMessage()).toEqual({
      type: 'FramebufferUpdateRequest',
      incremental: false,
      x: 0,
      y: 0,
      w: 20,
      h: 10,
    });
  });
});

describe('ServerFence', () => {
  it('answers a fence request with the same payload, supported flags, and no request bit', async () => {
    const { conn, client } = await connected();
    const flags =
      FenceFlag.Request | FenceFlag.BlockBefore | FenceFlag.BlockAfter | FenceFlag.SyncNext;
    conn.write(w.serverFence(flags, Buffer.from([0, 1, 2])));
    const { message } = await conn.readUntil('ClientFence');
    expect(message).toEqual({
      type: 'ClientFence',
      flags: FenceFlag.BlockBefore | FenceFlag.BlockAfter,
      payload: Buffer.from([0, 1, 2]),
    });
    expect(client.info?.fence).toBe(true);
  });

  it('closes on a fence answer nobody asked for', async () => {
    const { conn, closes } = await connected();
    conn.write(w.serverFence(0, Buffer.from('x')));
    await waitFor(() => closes.length === 1);
    expect(closes[0]?.error?.code).toBe('unexpected-fence');
  });

  it('keepalive: pings a silent server with a fence and closes when it stays unanswered', async () => {
    const h = makeClient({ keepaliveMs: 60 });
    const ready = h.client.connect();
    const conn = await server.accept();
    await conn.handshake(8, 8);
    conn.write(w.serverFence(FenceFlag.Request, Buffer.from([0])));
    conn.write(w.update([w.raw(0, 0, 8, 8, w.solid(8, 8, 0, 0, 0))]));
    await ready;
    await conn.readUntil('ClientFence'); // the answer to the server's fence
    const ping = (await conn.readUntil('ClientFence', 2000)).message;
    expect(ping.flags).toBe(FenceFlag.Request);
    conn.write(w.serverFence(0, ping.payload)); // pong
    const ping2 = (await conn.readUntil('ClientFence', 2000)).message;
    expect(ping2.payload.equals(ping.payload)).toBe(false);
    // no pong this time
    await waitFor(() => h.closes.length === 1, 2000, 'inactivity close');
    expect(h.closes[0]?.error?.code).toBe('inactivity-timeout');
  });
});

describe('input', () => {
  it('sends key and pointer events, clamping the pointer to the framebuffer', async () => {
    const { client, conn } = await connected(100, 50);
    client.keyEvent(0xff0d, true);
    client.keyEvent(0xff0d, false);
    client.pointerEvent(-5, 20.4, 1);
    client.pointerEvent(1000, 1000, 0x104);
    client.pointerEvent(Number.NaN, 3, 0);
    const seen = [];
    for (let i = 0; i < 5; i++)
      seen.push((await conn.readUntil(i < 2 ? 'KeyEvent' : 'PointerEvent')).message);
    expect(seen).toEqual([
      { type: 'KeyEvent', keysym: 0xff0d, down: true },
      { type: 'KeyEvent', keysym: 0xff0d, down: false },
      { type: 'PointerEvent', x: 0, y: 20, buttonMask: 1 },
      { type: 'PointerEvent', x: 99, y: 49, buttonMask: 4 },
      { type: 'PointerEvent', x: 0, y: 3, buttonMask: 0 },
    ]);
  });

  it('sends clipboard text as Latin-1 with LF line ends and ? for the rest, capped', async () => {
    const { client, conn } = await connected(10, 10, {
      limits: { ...DEFAULT_RFB_LIMITS, maxCutText: 12 },
    });
    client.clientCutText('é€\r\nb😀c\rdefghijkl');
    const { message } = await conn.readUntil('ClientCutText');
    expect(message.text).toEqual(Buffer.from('é?\nb?c\ndefgh', 'latin1'));
  });

  it('refuses input before the handshake is done', () => {
    const { client } = makeClient();
    expect(client.keyEvent(1, true)).toBe(false);
    expect(client.pointerEvent(1, 1, 0)).toBe(false);
    expect(client.clientCutText('x')).toBe(false);
  });

  it('setDesktopSize is a no-op until the server shows ExtendedDesktopSize support', async () => {
    const { client, conn } = await connected(64, 48);
    expect(client.setDesktopSize(800, 600)).toBe(false);
    conn.write(
      w.update([
        w.extendedDesktopSize(0, 0, 64, 48, [{ id: 42, x: 0, y: 0, w: 64, h: 48, flags: 3 }]),
      ]),
    );
    await waitFor(() => client.info?.extendedDesktopSize === true);
    expect(client.setDesktopSize(0, 600)).toBe(false);
    expect(client.setDesktopSize(800, 600)).toBe(true);
    const { message } = await conn.readUntil('SetDesktopSize');
    expect(message.width).toBe(800);
    expect(message.height).toBe(600);
    // one screen, id and flags preserved, covering the new size
    const s = message.screens;
    expect([
      s.readUInt32BE(0),
      s.readUInt16BE(4),
      s.readUInt16BE(6),
      s.readUInt16BE(8),
      s.readUInt16BE(10),
      s.readUInt32BE(12),
    ]).toEqual([42, 0, 0, 800, 600, 3]);
  });
});

describe('failures', () => {
  it('a malformed message closes only that client, with a clear reason', async () => {
    const a = await connected(16, 16);
    const b = await connected(16, 16);
    a.conn.write(w.u8(77));
    await waitFor(() => a.closes.length === 1);
    expect(a.closes[0]?.reason).toMatch(/unknown message type 77/);
    expect(a.closes[0]?.error?.code).toBe('unknown-message-type');
    expect(a.errors.map((e) => e.code)).toEqual(['unknown-message-type']);
    expect(a.client.keyEvent(1, true)).toBe(false);
    await a.conn.closed; // the socket really went

    // b is untouched
    b.conn.write(w.update([w.raw(1, 1, 2, 2, w.solid(2, 2, 200, 100, 50))]));
    await waitFor(() => b.fb.updates === 2);
    expect(b.fb.pixel(2, 2)).toEqual([200, 100, 50]);
    expect(b.client.phase).toBe('ready');
    expect(b.closes).toEqual([]);
  });

  it('an out-of-bounds rectangle closes the client', async () => {
    const { conn, closes } = await connected(16, 16);
    conn.write(w.update([w.copyRect(0, 0, 4, 4, 14, 14)]));
    await waitFor(() => closes.length === 1);
    expect(closes[0]?.error?.code).toBe('copy-source-out-of-bounds');
  });

  it('a sink that throws closes the client instead of escaping the socket handler', async () => {
    const h = makeClient();
    h.fb.putPixels = () => {
      throw new Error('sink bug');
    };
    const ready = h.client.connect();
    const conn = await server.accept();
    await conn.handshake(4, 4);
    conn.write(w.update([w.raw(0, 0, 4, 4, w.solid(4, 4, 0, 0, 0))]));
    await expect(ready).rejects.toMatchObject({ code: 'handler-error', message: /sink bug/ });
  });

  it('does not throw without an error listener', async () => {
    const fb = new FramebufferModel();
    const client = new RfbClient({ endpoint: server.endpoint, sink: fb, keepaliveMs: 0 });
    clients.push(client);
    const ready = client.connect();
    const conn = await server.accept();
    conn.write(w.version('002.000'));
    await expect(ready).rejects.toMatchObject({ code: 'unsupported-version' });
  });

  it('times out a server that never speaks', async () => {
    const h = makeClient({ connectTimeoutMs: 100 });
    const ready = h.client.connect();
    await server.accept();
    await expect(ready).rejects.toMatchObject({
      code: 'connect-timeout',
      message: /within 100 ms \(phase handshake\)/,
    });
    expect(h.closes).toHaveLength(1);
  });

  it('reports a server that hangs up during the handshake', async () => {
    const h = makeClient();
    const ready = h.client.connect();
    const conn = await server.accept();
    conn.write(w.version());
    await conn.read(12);
    conn.socket.end();
    await expect(ready).rejects.toMatchObject({
      code: 'server-closed',
      message: /during the handshake/,
    });
  });

  it('reports a server that closes after the handshake', async () => {
    const { conn, closes } = await connected();
    conn.socket.end();
    await waitFor(() => closes.length === 1);
    expect(closes[0]?.error?.code).toBe('server-closed');
  });

  it('reports a missing socket', async () => {
    const h = makeClient({ endpoint: { kind: 'unix', path: `${server.dir}/nothing.sock` } });
    await expect(h.client.connect()).rejects.toMatchObject({
      code: 'socket-error',
      message: /ENOENT/,
    });
  });

  it('close() rejects a pending connect and emits close once', async () => {
    const h = makeClient();
    const ready = h.client.connect();
    await server.accept();
    h.client.close('admin logged the user off');
    h.client.close('again');
    await expect(ready).rejects.toMatchObject({
      code: 'closed',
      message: 'admin logged the user off',
    });
    expect(h.closes).toEqual([{ reason: 'admin logged the user off' }]);
  });

  it('connect() twice is refused', async () => {
    const { client } = await connected();
    await expect(client.connect()).rejects.toThrow(/phase ready/);
  });
});
