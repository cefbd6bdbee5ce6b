import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ProviderError, type CreateSpec } from '../../../src/providers/types.js';
import { VncProvider } from '../../../src/providers/vnc.js';
import { vncAuthResponse } from '../../../src/rfb/vnc-auth.js';
import { closedPort, LoopbackServers } from '../../helpers/loopback-servers.js';

const SECRET = 's3cr3tpw';
const servers = new LoopbackServers();
const serve = (onConn: (s: net.Socket) => void) => servers.serve(onConn);

afterEach(() => servers.close());

function captureLog(): { log: Logger; text: () => string } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { log: pino({ level: 'trace' }, sink), text: () => lines.join('') };
}

const rfbBanner = (s: net.Socket) => s.write('RFB 003.008\n');

/**
 * A VNC server that goes through the whole login: version, VNC authentication with
 * `password`, ClientInit, ServerInit. `logins` counts the clients that got all the way in.
 */
function rfbLogin(password: string, logins = { done: 0 }) {
  return (s: net.Socket) => {
    const challenge = Buffer.alloc(16, 7);
    let step: 'version' | 'type' | 'response' | 'init' | 'in' = 'version';
    let buf = Buffer.alloc(0);
    const take = (n: number) => {
      if (buf.length < n) return undefined;
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return out;
    };
    s.write('RFB 003.008\n');
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (step === 'version' && take(12)) {
          s.write(Buffer.from([1, 2])); // one security type: VNC authentication
          step = 'type';
        } else if (step === 'type' && take(1)) {
          s.write(challenge);
          step = 'response';
        } else if (step === 'response') {
          const r = take(16);
          if (!r) return;
          if (!r.equals(vncAuthResponse(challenge, password))) {
            const reason = Buffer.from('authentication failed');
            const len = Buffer.alloc(4);
            len.writeUInt32BE(reason.length);
            s.end(Buffer.concat([Buffer.from([0, 0, 0, 1]), len, reason]));
            return;
          }
          s.write(Buffer.from([0, 0, 0, 0]));
          step = 'init';
        } else if (step === 'init' && take(1)) {
          const init = Buffer.alloc(24 + 4);
          init.writeUInt16BE(640, 0);
          init.writeUInt16BE(480, 2);
          Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]).copy(init, 4);
          init.writeUInt32BE(4, 20);
          Buffer.from('test').copy(init, 24);
          s.write(init);
          logins.done++;
          step = 'in';
        } else return;
      }
    });
  };
}

function spec(hosts: unknown[], slot: number | undefined): CreateSpec {
  return { desktopId: 'd1', poolId: 'p1', template: { hosts }, persistent: false, slot };
}

describe('VncProvider', () => {
  const provider = new VncProvider({ probeTimeoutMs: 300 });

  it('validates templates', () => {
    expect(() => provider.parseTemplate({ hosts: [] })).toThrow();
    expect(() => provider.parseTemplate({ hosts: [{ host: 'h', port: 0 }] })).toThrow();
    expect(provider.parseTemplate({ hosts: [{ host: '127.0.0.1', port: 5900 }] })).toEqual({
      hosts: [{ host: '127.0.0.1', port: 5900 }],
    });
    expect(provider.parseTemplate({ hosts: [{ socket: '/run/vnc/a.sock' }] })).toEqual({
      hosts: [{ socket: '/run/vnc/a.sock' }],
    });
    // one of the two addresses, not both, not neither, and a socket path is absolute
    for (const bad of [
      { socket: '/run/vnc/a.sock', host: '127.0.0.1', port: 5900 },
      { socket: '/run/vnc/a.sock', port: 5900 },
      { host: '127.0.0.1' },
      { name: 'nothing' },
      { socket: 'relative.sock' },
    ]) {
      expect(() => provider.parseTemplate({ hosts: [bad] }), JSON.stringify(bad)).toThrow();
    }
  });

  it("refuses a socket inside the server's own directories (its desktops' private sockets)", async () => {
    const own = fs.mkdtempSync(path.join(os.tmpdir(), 'vnc-own-'));
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'vnc-outside-'));
    const guarded = new VncProvider({ probeTimeoutMs: 300, ownDirs: [own] });
    const socket = path.join(own, 'desktop-1', 'rfb.sock');
    fs.mkdirSync(path.dirname(socket));
    const server = net.createServer(rfbBanner);
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      // by path when the pool is saved
      expect(() => guarded.parseTemplate({ hosts: [{ socket }] })).toThrow(/own directory/);
      expect(() =>
        guarded.parseTemplate({
          hosts: [{ socket: `${outside}/../${path.basename(own)}/x.sock` }],
        }),
      ).toThrow(/own directory/);
      // by real path when a desktop is made: a link from outside to the private socket
      const link = path.join(outside, 'innocent.sock');
      fs.symlinkSync(socket, link);
      expect(guarded.parseTemplate({ hosts: [{ socket: link }] })).toEqual({
        hosts: [{ socket: link }],
      });
      await expect(
        guarded.create(spec([{ socket: link }], 0), captureLog().log),
      ).rejects.toMatchObject({
        code: 'VNC_OWN_SOCKET',
      });
      // the same socket is fine for a provider that does not own that directory
      expect(await provider.create(spec([{ socket: link }], 0), captureLog().log)).toMatchObject({
        socket: link,
      });
    } finally {
      await new Promise((resolve) => server.close(resolve));
      fs.rmSync(own, { recursive: true, force: true });
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });

  it('checks the socket again at every connection: a path turned into a link to its own is refused', async () => {
    const own = fs.mkdtempSync(path.join(os.tmpdir(), 'vnc-own-'));
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'vnc-outside-'));
    const guarded = new VncProvider({ probeTimeoutMs: 300, ownDirs: [own] });
    const named = path.join(outside, 'lab.sock');
    const privateSocket = path.join(own, 'rfb.sock');
    const servers2 = [net.createServer(rfbBanner), net.createServer(rfbBanner)];
    await new Promise<void>((resolve) => servers2[0]!.listen(named, resolve));
    await new Promise<void>((resolve) => servers2[1]!.listen(privateSocket, resolve));
    try {
      const handle = await guarded.create(spec([{ socket: named }], 0), captureLog().log);
      expect(guarded.endpoint(handle)).toEqual({ kind: 'unix', path: named });
      // whoever controls that directory swaps the socket for a link to a private one
      await new Promise((resolve) => servers2[0]!.close(resolve));
      fs.rmSync(named, { force: true });
      fs.symlinkSync(privateSocket, named);
      expect(() => guarded.endpoint(handle)).toThrow(/own directory/);
      expect(await guarded.health(handle)).toMatchObject({
        state: 'dead',
        reason: expect.stringMatching(/own directory/),
      });
    } finally {
      for (const s of servers2) if (s.listening) await new Promise((resolve) => s.close(resolve));
      fs.rmSync(own, { recursive: true, force: true });
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });

  it('reaches a VNC server on a unix socket: a unix endpoint, health by a full login', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vnc-provider-'));
    const socket = path.join(dir, 'rfb.sock');
    const logins = { done: 0 };
    const server = net.createServer(rfbLogin(SECRET, logins));
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      const { log, text } = captureLog();
      const handle = await provider.create(
        spec([{ socket, password: SECRET, name: 'local' }], 0),
        log,
      );
      expect(handle).toEqual({ socket, password: SECRET, name: 'local' });
      expect(provider.endpoint(handle)).toEqual({ kind: 'unix', path: socket, password: SECRET });
      expect(await provider.health(handle)).toEqual({ state: 'running' });
      expect(logins.done).toBe(1);
      expect(provider.describe(handle)).toEqual({
        host: socket,
        name: 'local',
        auth: 'VNC password',
      });
      expect(text()).toContain(socket);
      expect(text()).not.toContain(SECRET);
    } finally {
      await new Promise((resolve) => server.close(resolve));
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // the socket gone: dead, and a new desktop on it is refused with the path in the error
    expect(await provider.health({ socket, name: 'local' })).toMatchObject({ state: 'dead' });
    await expect(provider.create(spec([{ socket }], 0), captureLog().log)).rejects.toThrow(socket);
  });

  it('creates a desktop from the slot-th host and gives a tcp endpoint with the password', async () => {
    const port = await serve(rfbLogin(SECRET));
    const { log, text } = captureLog();
    const hosts = [
      { host: '127.0.0.1', port: await closedPort(), name: 'other' },
      { host: '127.0.0.1', port, password: SECRET, name: 'lab-pc-2' },
    ];
    const handle = await provider.create(spec(hosts, 1), log);
    expect(handle).toEqual({ host: '127.0.0.1', port, password: SECRET, name: 'lab-pc-2' });
    expect(JSON.parse(JSON.stringify(handle))).toEqual(handle);
    expect(provider.endpoint(handle)).toEqual({
      kind: 'tcp',
      host: '127.0.0.1',
      port,
      password: SECRET,
    });
    expect(await provider.health(handle)).toEqual({ state: 'running' });
    expect(provider.describe(handle)).toEqual({
      host: `127.0.0.1:${port}`,
      name: 'lab-pc-2',
      auth: 'VNC password',
    });
    await provider.destroy(handle, log);
    // destroy leaves the machine alone: it still answers
    expect(await provider.health(handle)).toEqual({ state: 'running' });
    expect(text()).toContain('vnc desktop attached');
    expect(text()).not.toContain(SECRET);
  });

  it('works without a password', async () => {
    const port = await serve(rfbBanner);
    const { log } = captureLog();
    const handle = await provider.create(spec([{ host: '127.0.0.1', port }], 0), log);
    expect(handle).toEqual({ host: '127.0.0.1', port, name: `127.0.0.1:${port}` });
    expect(provider.endpoint(handle)).toEqual({ kind: 'tcp', host: '127.0.0.1', port });
  });

  it('marks the endpoint of a host on another machine remote (compressed encodings)', () => {
    const handle = { host: '192.0.2.10', port: 5900, name: 'lab-pc' };
    expect(provider.endpoint(handle)).toEqual({
      kind: 'tcp',
      host: '192.0.2.10',
      port: 5900,
      remote: true,
    });
  });

  it('needs a slot inside the host list', async () => {
    const { log } = captureLog();
    const hosts = [{ host: '127.0.0.1', port: 5900 }];
    await expect(provider.create(spec(hosts, undefined), log)).rejects.toMatchObject({
      code: 'VNC_NO_SLOT',
    });
    await expect(provider.create(spec(hosts, 1), log)).rejects.toMatchObject({
      code: 'VNC_SLOT_OUT_OF_RANGE',
    });
    await expect(provider.create(spec(hosts, -1), log)).rejects.toMatchObject({
      code: 'VNC_SLOT_OUT_OF_RANGE',
    });
    await expect(provider.create(spec(hosts, 0.5), log)).rejects.toBeInstanceOf(ProviderError);
  });

  it('refuses hosts that do not speak RFB, without logging the password', async () => {
    const { log, text } = captureLog();
    const garbage = await serve((s) => s.write('SSH-2.0-OpenSSH_9.2\r\n'));
    const silent = await serve(() => undefined);
    const refused = await closedPort();
    for (const port of [garbage, silent, refused]) {
      const err = await provider
        .create(spec([{ host: '127.0.0.1', port, password: SECRET }], 0), log)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProviderError);
      expect((err as ProviderError).code).toBe('VNC_UNREACHABLE');
      expect((err as Error).message).not.toContain(SECRET);
    }
    expect(text()).toContain('vnc host not reachable');
    expect(text()).not.toContain(SECRET);
  });

  it('checks health with a complete login (with the password), not a hang-up after the banner', async () => {
    const logins = { done: 0 };
    const port = await serve(rfbLogin(SECRET, logins));
    const ok = { host: '127.0.0.1', port, password: SECRET, name: 'pc' };
    expect(await provider.health(ok)).toEqual({ state: 'running' });
    expect(await provider.health(ok)).toEqual({ state: 'running' });
    expect(logins.done).toBe(2);
    expect(await provider.health({ ...ok, password: 'wrong' })).toMatchObject({
      state: 'unresponsive',
      reason: expect.stringMatching(/authentication failed/),
    });
  });

  it('reports health: unresponsive for garbage or silence, dead when refused', async () => {
    const garbage = await serve((s) => s.write('garbage garbage\n'));
    const silent = await serve(() => undefined);
    const refused = await closedPort();
    const h = (port: number) => ({ host: '127.0.0.1', port, name: 'x' });
    expect(await provider.health(h(garbage))).toMatchObject({
      state: 'unresponsive',
      reason: expect.stringMatching(/RFB|version/i),
    });
    const started = Date.now();
    expect(await provider.health(h(silent))).toMatchObject({
      state: 'unresponsive',
      reason: expect.stringMatching(/no complete RFB handshake/),
    });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(await provider.health(h(refused))).toMatchObject({ state: 'dead' });
    expect(await provider.health({ nothing: true })).toMatchObject({ state: 'dead' });
  });

  it('a server going away turns running into dead', async () => {
    const port = await serve(rfbBanner);
    const { log } = captureLog();
    const handle = await provider.create(spec([{ host: '127.0.0.1', port }], 0), log);
    await servers.close();
    expect(await provider.health(handle)).toMatchObject({ state: 'dead' });
  });
});
