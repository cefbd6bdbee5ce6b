/**
 * A VNC server that means harm, on a real unix socket: it stops reading, floods requests
 * for answers, drips a message, announces huge screens, or is not who it should be. The
 * client must stay bounded in memory, end the link with a reason, and never wait forever.
 */
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RfbClient } from '../../../src/rfb/client.js';
import type { RfbClientOptions, RfbCloseEvent } from '../../../src/rfb/client-api.js';
import { FenceFlag } from '../../../src/rfb/constants.js';
import { RfbError, viewerReason } from '../../../src/rfb/errors.js';
import { DEFAULT_RFB_LIMITS } from '../../../src/rfb/types.js';
import { FakeRfbServer, waitFor, type FakeConnection } from './helpers/fake-server.js';
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

function makeClient(options: Partial<RfbClientOptions> = {}) {
  const fb = new FramebufferModel();
  const client = new RfbClient({ endpoint: server.endpoint, sink: fb, keepaliveMs: 0, ...options });
  clients.push(client);
  const closes: RfbCloseEvent[] = [];
  client.on('close', (e) => closes.push(e));
  client.on('error', () => undefined);
  return { client, fb, closes };
}

async function connected(width = 64, height = 48, options: Partial<RfbClientOptions> = {}) {
  const h = makeClient(options);
  const ready = h.client.connect();
  const conn = await server.accept();
  await conn.handshake(width, height);
  conn.write(w.update([w.raw(0, 0, width, height, w.solid(width, height, 1, 2, 3))]));
  await ready;
  return { ...h, conn };
}

/** Write `total` copies of `message` in chunks, letting the event loop run between chunks. */
async function flood(conn: FakeConnection, message: Buffer, total: number): Promise<void> {
  const perChunk = Math.max(1, Math.floor((256 * 1024) / message.length));
  for (let sent = 0; sent < total; sent += perChunk) {
    const n = Math.min(perChunk, total - sent);
    conn.socket.write(Buffer.concat(Array.from({ length: n }, () => message)));
    await new Promise((r) => setImmediate(r));
  }
}

describe('a server that does not read', () => {
  it('gets at most the reply bound answered, then reading stops, then the link is dropped', async () => {
    const { client, conn, closes } = await connected(64, 48, { sendStallMs: 400 });
    conn.socket.pause(); // the server reads nothing more
    let maxBuffered = 0;
    const sampler = setInterval(
      () => (maxBuffered = Math.max(maxBuffered, client.sendBuffered)),
      2,
    );
    // 40,000 fence requests of 73 bytes each ask for 2.9 MB of answers
    const fence = w.serverFence(FenceFlag.Request | FenceFlag.BlockBefore, Buffer.alloc(64, 7));
    await flood(conn, fence, 40_000);
    await waitFor(() => closes.length > 0, 5000, 'the link to be dropped');
    clearInterval(sampler);
    maxBuffered = Math.max(maxBuffered, client.sendBuffered);
    // 64 KiB of answers, one message's answer over it, plus what the kernel socket took
    expect(maxBuffered).toBeLessThan(96 * 1024);
    expect(closes[0]!.error?.code).toBe('send-stalled');
    expect(closes[0]!.reason).toMatch(/has not read what was sent to it for 400 ms/);
    expect(viewerReason(closes[0]!.error!)).toMatchObject({ code: 'DESKTOP_TIMEOUT' });
  });

  it('refuses input that would overfill the send buffer, and takes it again once it drains', async () => {
    const { client, conn } = await connected(64, 48, {
      sendBufferBytes: 256 * 1024,
      sendStallMs: 10_000,
    });
    conn.socket.pause();
    const text = 'x'.repeat(100 * 1024);
    let accepted = 0;
    for (let i = 0; i < 50; i++) if (client.clientCutText(text)) accepted++;
    // the kernel takes some; our buffer holds at most 256 KiB
    expect(accepted).toBeLessThan(10);
    expect(client.sendBuffered).toBeLessThanOrEqual(256 * 1024);
    expect(client.keyEvent(0x61, true)).toBe(true); // small input still fits
    conn.socket.resume();
    await waitFor(() => client.sendBuffered === 0, 5000, 'the buffer to drain');
    expect(client.clientCutText(text)).toBe(true);
  });

  it('answers a burst of empty updates with one update request per read, not one per update', async () => {
    const { conn, closes } = await connected(64, 48);
    const before = conn.pending;
    // 4,000 empty updates (16 kB); each would have cost a 10-byte request (40 kB)
    await flood(conn, w.update([]), 4_000);
    await new Promise((r) => setTimeout(r, 100));
    const requests = (conn.pending - before) / 10;
    expect(requests).toBeGreaterThan(0);
    expect(requests).toBeLessThan(100);
    expect(closes).toEqual([]);
  });

  it('drops a server that sends thousands of messages a second', async () => {
    const { conn, closes } = await connected(64, 48);
    const started = Date.now();
    await flood(conn, w.update([]), 100_000);
    await waitFor(() => closes.length > 0, 2000, 'the link to be dropped');
    expect(closes[0]!.error?.code).toBe('message-flood');
    expect(Date.now() - started).toBeLessThan(2000);
    expect(viewerReason(closes[0]!.error!).code).toBe('DESKTOP_PROTOCOL_ERROR');
  });
});

describe('a server that stalls mid-message', () => {
  it('is dropped when a rectangle is drip-fed', async () => {
    const { client, conn, closes } = await connected(64, 48, { messageTimeoutMs: 500 });
    const started = Date.now();
    const message = w.update([w.raw(0, 0, 64, 48, w.solid(64, 48, 9, 9, 9))]);
    let i = 0;
    const drip = setInterval(() => {
      if (i < message.length && !conn.socket.destroyed) conn.socket.write(message.subarray(i, ++i));
    }, 20);
    try {
      await waitFor(() => closes.length > 0, 5000, 'the link to be dropped');
    } finally {
      clearInterval(drip);
    }
    expect(closes[0]!.error?.code).toBe('message-timeout');
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    expect(client.phase).toBe('closed');
    expect(viewerReason(closes[0]!.error!)).toEqual({
      code: 'DESKTOP_TIMEOUT',
      message: 'the desktop did not answer in time',
    });
  });

  it('is not dropped while whole messages keep coming for longer than the timeout', async () => {
    const { conn, closes, fb } = await connected(64, 48, { messageTimeoutMs: 200 });
    const started = Date.now();
    // each update arrives in two pieces 30 ms apart, back to back, for 800 ms
    for (let n = 0; Date.now() - started < 800; n++) {
      const m = w.update([w.raw(0, 0, 64, 48, w.solid(64, 48, n & 0xff, 0, 0))]);
      conn.socket.write(m.subarray(0, 100));
      await new Promise((r) => setTimeout(r, 30));
      conn.socket.write(m.subarray(100));
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(closes).toEqual([]);
    expect(fb.width).toBe(64);
  });
});

describe('a server that announces a huge screen', () => {
  it.each([
    ['ServerInit', 16384, 16384],
    ['ServerInit', 8192, 8192],
  ])('is refused at %s %ix%i before anything is allocated', async (_at, width, height) => {
    const h = makeClient();
    const ready = h.client.connect();
    const conn = await server.accept();
    conn.write(w.version());
    await conn.read(12);
    conn.write(w.securityTypes(1));
    await conn.read(1);
    conn.write(w.securityResult(0));
    await conn.read(1);
    conn.write(w.serverInit(width, height));
    const err = (await ready.catch((e: unknown) => e)) as RfbError;
    expect(err.code).toBe('framebuffer-too-large');
    expect(h.fb.width).toBe(0);
    expect(viewerReason(err)).toEqual({
      code: 'DESKTOP_TOO_LARGE',
      message: `the desktop's screen is ${width}×${height} (${((width * height) / 1e6).toFixed(1)} megapixels); this pool allows at most 8192×8192 and 16.8 megapixels`,
    });
  });

  it('is dropped when it resizes to a huge screen later, with the same reason', async () => {
    const { conn, closes, fb } = await connected(64, 48, {
      limits: { ...DEFAULT_RFB_LIMITS, maxWidth: 1920, maxHeight: 1080, maxPixels: 1920 * 1080 },
    });
    conn.write(w.update([w.desktopSize(16384, 16384)]));
    await waitFor(() => closes.length > 0, 2000, 'the link to be dropped');
    expect(closes[0]!.error?.code).toBe('framebuffer-too-large');
    expect(fb.width).toBe(64);
  });
});

describe('who serves the socket', () => {
  const uid = process.getuid!();

  it('connects when the expected account serves it', async () => {
    const h = makeClient({ endpoint: { kind: 'unix', path: server.socketPath, serverUid: uid } });
    const ready = h.client.connect();
    const conn = await server.accept();
    await conn.handshake(32, 32);
    conn.write(w.update([w.raw(0, 0, 32, 32, w.solid(32, 32, 1, 1, 1))]));
    await expect(ready).resolves.toMatchObject({ width: 32 });
  });

  it('refuses another account, before reading a byte of the server', async () => {
    const h = makeClient({
      endpoint: { kind: 'unix', path: server.socketPath, serverUid: uid + 1 },
    });
    const ready = h.client.connect();
    const conn = await server.accept();
    conn.write(w.version());
    const err = (await ready.catch((e: unknown) => e)) as RfbError;
    expect(err.code).toBe('untrusted-server');
    expect(err.message).toMatch(new RegExp(`served by uid ${uid} \\(pid ${process.pid}\\)`));
    expect(err.message).toMatch(new RegExp(`not the desktop's uid ${uid + 1}`));
    expect(conn.pending).toBe(0); // not even our version answer went out
    expect(viewerReason(err).code).toBe('DESKTOP_UNTRUSTED');
  });
});

describe('a socket put in place by another account', () => {
  const NOBODY = 65534;
  const script = path.resolve(import.meta.dirname, '../../helpers/hostile-vnc-server.mjs');

  /** The hostile server as its own process running as `nobody`, on a socket it binds itself. */
  async function served<T>(fn: (socketPath: string) => Promise<T>): Promise<T> {
    const dir = mkdtempSync(path.join(tmpdir(), 'rfb-nobody-'));
    chmodSync(dir, 0o777);
    const socketPath = path.join(dir, 'rfb.sock');
    // nobody may not be able to read the checkout (a clone under a 0700 directory): run a copy
    const copy = path.join(dir, path.basename(script));
    copyFileSync(script, copy);
    chmodSync(copy, 0o644);
    const child = spawn(process.execPath, [copy, socketPath, 'huge-init'], {
      uid: NOBODY,
      gid: NOBODY,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
        child.once('exit', (code) => reject(new Error(`hostile server exited (${code})`)));
      });
      return await fn(socketPath);
    } finally {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const connectTo = (socketPath: string, serverUid: number) => {
    const client = new RfbClient({
      endpoint: { kind: 'unix', path: socketPath, serverUid },
      sink: new FramebufferModel(),
      keepaliveMs: 0,
    });
    clients.push(client);
    return client.connect().catch((e: unknown) => e as RfbError);
  };

  it.skipIf(process.getuid!() !== 0)('is refused when the desktop is not nobody', async () => {
    const err = await served((p) => connectTo(p, 0));
    expect(err).toBeInstanceOf(RfbError);
    expect((err as RfbError).code).toBe('untrusted-server');
    expect((err as RfbError).message).toMatch(
      /served by uid 65534 \(pid \d+\), not the desktop's uid 0/,
    );
  });

  it.skipIf(process.getuid!() !== 0)('is let through when it is the desktop account', async () => {
    // it gets as far as the handshake: this server then announces a screen we refuse
    const err = await served((p) => connectTo(p, NOBODY));
    expect((err as RfbError).code).toBe('framebuffer-too-large');
  });
});
