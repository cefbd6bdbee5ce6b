/**
 * Issue 4 through the server: qemu pools driven by the REST API, the broker and the
 * gateway, with real VMs booted from linked clones of the test guest
 * (infra/guest/build-guest.sh). A socket.io viewer types into the VM console as a browser
 * would (key events, X11 keysyms); what the guest wrote is read back offline from the
 * desktop's overlay. Also a `vnc` pool in front of an Xvnc that we start ourselves.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AttachResult, ErrorResult, SessionStatusMsg } from '@vdi/shared';
import type { Clock } from '../../src/clock.js';
import type { QemuHandle } from '../../src/providers/qemu/handle.js';
import { alive, desktopHandle, handleOf } from '../helpers/desktops.js';
import { freePort } from '../helpers/process-server.js';
import {
  ADMIN,
  Api,
  startServer,
  tempDirs,
  testConfig,
  until,
  type TestServer,
} from '../helpers/server.js';
import {
  atPrompt,
  buildGuest,
  expectedAccel,
  keyEventsFor,
  mountCount,
  readGuestFile,
  sha256File,
  type GuestTemplate,
} from '../helpers/guest.js';
import {
  attach,
  connected,
  disconnected,
  receiveFrames,
  Viewers,
  type ReceivedFrame,
  type ViewerSocket,
} from '../helpers/viewer.js';

const run = promisify(execFile);

/** a TCG boot takes 4–7 s here; leave room for a loaded machine */
const BOOT_TIMEOUT_MS = 60_000;
/** a typed command's effect on the disk */
const GUEST_TIMEOUT_MS = 30_000;
/** the broker checks desktop health this often (its default) */
const HEALTH_EVERY_MS = 10_000;

interface Viewer {
  s: ViewerSocket;
  attach: AttachResult | ErrorResult;
  frames: ReceivedFrame[];
  session: SessionStatusMsg[];
  closed: Promise<string>;
}

describe('qemu pools through the server', () => {
  const dirs = tempDirs('vdiq');
  /** the server's clock: real time plus what the test skips ahead (health checks) */
  let skippedMs = 0;
  const clock: Clock = { now: () => Date.now() + skippedMs };
  const env = { DEFAULT_POOL: 'false', QEMU_ACCEL: 'auto' };
  let t: TestServer;
  let api: Api;
  let adminId = '';
  let template: GuestTemplate;
  let goldenSha = '';
  let accel: 'KVM' | 'TCG';
  const viewers = new Viewers();
  /** every VM seen, killed in afterAll whatever happened */
  const vms = new Map<number, QemuHandle>();
  let xvnc: ChildProcess | undefined;

  const start = async () => {
    t = await startServer(testConfig(env, dirs), { clock });
    api = await new Api(t.url).login(ADMIN.username, ADMIN.password);
  };

  const createPool = async (name: string, body: Record<string, unknown>): Promise<string> => {
    const r = await api.post('/api/admin/pools', { name, maxSize: 2, ...body });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const e = await api.post('/api/admin/entitlements', {
      poolId: r.body.id,
      principalType: 'user',
      principalId: adminId,
    });
    expect(e.status).toBe(201);
    return r.body.id;
  };

  const connect = async (
    poolId: string,
  ): Promise<{ sessionId: string; desktopId: string; resumed: boolean }> => {
    const r = await api.post(`/api/pools/${poolId}/connect`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body;
  };

  const desktopRow = (id: string) => t.server.broker.desktop(id);
  const vmOf = async (desktopId: string): Promise<QemuHandle> => {
    const h = await desktopHandle<QemuHandle>(t, desktopId);
    vms.set(h.pid, h);
    return h;
  };

  const openViewer = async (sessionId: string): Promise<Viewer> => {
    const s = viewers.open(t.url, { cookie: api.cookie });
    const v: Viewer = {
      s,
      attach: { ok: false, code: 'PENDING', message: '' },
      frames: receiveFrames(s),
      session: [],
      closed: disconnected(s),
    };
    s.on('session', (m) => v.session.push(m));
    await connected(s);
    v.attach = await attach(s, { sessionId });
    expect(v.attach, JSON.stringify(v.attach)).toMatchObject({ ok: true });
    return v;
  };

  /** frames keep arriving (the viewer acks each); a live VM console always changes: its cursor blinks */
  const framesFlow = async (v: Viewer, what: string) => {
    const n = v.frames.length;
    await until(() => v.frames.length > n, 15_000, `frames (${what})`);
  };

  const type = async (v: Viewer, text: string) => {
    for (const k of keyEventsFor(text)) {
      v.s.emit('key', k);
      // about a fast typist; QEMU also paces VNC keys itself (key-delay-ms)
      await new Promise((r) => setTimeout(r, 4));
    }
  };

  const booted = async (h: QemuHandle, what: string) => {
    const t0 = Date.now();
    await until(() => atPrompt(h), BOOT_TIMEOUT_MS, `${what}: the guest's prompt`);
    console.log(
      `${what}: guest at its prompt ${Date.now() - t0} ms after we started waiting (${h.accel})`,
    );
  };

  /** the guest booted again (it mounted /data once more) and is back at its prompt */
  const rebooted = async (h: QemuHandle, mountsBefore: number, what: string) => {
    await until(
      async () => (await mountCount(h.overlayPath)) > mountsBefore,
      BOOT_TIMEOUT_MS,
      `${what}: the guest to mount /data again`,
    );
    await booted(h, what);
  };

  const guestFile = (h: QemuHandle, file: string) =>
    readGuestFile(h.overlayPath, file).then((s) => s?.trim());

  /** type a command that writes `file` and wait until it is on the overlay */
  const writeThroughGateway = async (v: Viewer, h: QemuHandle, file: string, content: string) => {
    await type(v, `echo ${content} > /data${file}; sync\n`);
    await until(
      async () => (await guestFile(h, file)) === content,
      GUEST_TIMEOUT_MS,
      `${file} written in the guest`,
    );
  };

  /** skip ahead to the next health check and run a broker tick */
  const healthTick = async () => {
    skippedMs += HEALTH_EVERY_MS + 1;
    await t.server.broker.tick();
  };

  beforeAll(async () => {
    template = await buildGuest();
    goldenSha = await sha256File(template.image);
    accel = await expectedAccel();
    await start();
    adminId = (await api.get('/api/auth/me')).body.id;
  });

  afterAll(async () => {
    viewers.closeAll();
    await t?.close();
    for (const h of vms.values()) {
      try {
        process.kill(-h.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (xvnc?.pid && alive(xvnc.pid)) process.kill(xvnc.pid, 'SIGKILL');
    fs.rmSync(dirs.dataDir, { recursive: true, force: true });
    fs.rmSync(dirs.runDir, { recursive: true, force: true });
  });

  describe('a floating pool', () => {
    let poolId = '';
    let sessionId = '';
    let desktopId = '';
    let vm: QemuHandle;
    let viewer: Viewer;
    const token = `floating${randomBytes(4).toString('hex')}`;

    it('boots a VM from a linked clone and streams it; typing through the gateway reaches the guest', async () => {
      poolId = await createPool('VM floating', {
        provider: 'qemu',
        assignment: 'floating',
        template,
      });
      const t0 = Date.now();
      ({ sessionId, desktopId } = await connect(poolId));
      vm = await vmOf(desktopId);
      expect(vm.overlayPath.startsWith(dirs.dataDir)).toBe(true);
      const { stdout } = await run('qemu-img', ['info', '-U', '--output=json', vm.overlayPath]);
      expect(JSON.parse(stdout)).toMatchObject({
        format: 'qcow2',
        'backing-filename': template.image,
      });

      viewer = await openViewer(sessionId);
      await booted(vm, 'floating');
      await framesFlow(viewer, 'boot');
      expect(viewer.frames.at(-1)).toMatchObject({ width: 720, height: 400 });
      await writeThroughGateway(viewer, vm, '/f', token);
      console.log(`floating: connect → file written through the gateway: ${Date.now() - t0} ms`);
    });

    it('shows the acceleration, a thumbnail of the VM screen, and takes snapshots and power actions', async () => {
      const sessions = (await api.get('/api/admin/sessions')).body as Array<{
        id: string;
        provider: string;
        facts: Record<string, string>;
        viewers: number;
      }>;
      const row = sessions.find((s) => s.id === sessionId);
      expect(row).toMatchObject({
        provider: 'qemu',
        viewers: 1,
        facts: { accel, memory: '256 MiB', vcpus: '1' },
      });
      const desktops = (await api.get(`/api/admin/pools/${poolId}/desktops`)).body as Array<{
        id: string;
        facts: Record<string, string>;
      }>;
      expect(desktops.find((d) => d.id === desktopId)?.facts.accel).toBe(accel);

      const thumb = await fetch(`${t.url}/api/admin/desktops/${desktopId}/thumbnail`, {
        headers: { cookie: api.cookie },
      });
      expect(thumb.status).toBe(200);
      expect(thumb.headers.get('content-type')).toBe('image/jpeg');
      const jpeg = Buffer.from(await thumb.arrayBuffer());
      const meta = await sharp(jpeg).metadata();
      expect(meta).toMatchObject({ format: 'jpeg', width: 240, height: 133 });
      // the guest's banner: yellow text on blue at the top left, black below it
      const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
      const mean = (x0: number, y0: number, w: number, h: number) => {
        const sum = [0, 0, 0];
        for (let y = y0; y < y0 + h; y++) {
          for (let x = x0; x < x0 + w; x++)
            for (let c = 0; c < 3; c++) sum[c]! += data[(y * info.width + x) * info.channels + c]!;
        }
        return sum.map((v) => v / (w * h));
      };
      const banner = mean(0, 0, 90, 4);
      expect(banner[2]! - banner[0]!).toBeGreaterThan(50);
      expect(mean(120, 100, 100, 30).reduce((a, b) => a + b)).toBeLessThan(30);

      // snapshot, change the disk, restore: the change is gone, the VM runs on
      const snap = await api.post(`/api/admin/desktops/${desktopId}/snapshots`, { name: 'before' });
      expect(snap.status, JSON.stringify(snap.body)).toBe(204);
      expect((await api.get(`/api/admin/desktops/${desktopId}/snapshots`)).body).toEqual([
        'before',
      ]);
      expect(
        (await api.post(`/api/admin/desktops/${desktopId}/snapshots`, { name: 'bad name' })).status,
      ).toBe(400);
      await writeThroughGateway(viewer, vm, '/g', 'after-snapshot');
      const restore = await api.post(`/api/admin/desktops/${desktopId}/snapshots/before/restore`);
      expect(restore.status, JSON.stringify(restore.body)).toBe(204);
      expect(await guestFile(vm, '/g')).toBeUndefined();
      expect(await guestFile(vm, '/f')).toBe(token);
      const missing = await api.post(`/api/admin/desktops/${desktopId}/snapshots/missing/restore`);
      expect(missing).toMatchObject({ status: 404, body: { error: { code: 'QEMU_NO_SNAPSHOT' } } });
      await framesFlow(viewer, 'after restore');
      await writeThroughGateway(viewer, vm, '/h', 'after-restore');

      // power: stop shows as paused, cont resumes, reset reboots the guest
      expect(
        (await api.post(`/api/admin/desktops/${desktopId}/power`, { action: 'stop' })).status,
      ).toBe(204);
      expect(await t.server.broker.provider('qemu').health(vm)).toMatchObject({ state: 'paused' });
      expect(
        (await api.post(`/api/admin/desktops/${desktopId}/power`, { action: 'cont' })).status,
      ).toBe(204);
      expect(await t.server.broker.provider('qemu').health(vm)).toEqual({ state: 'running' });
      expect(
        (await api.post(`/api/admin/desktops/${desktopId}/power`, { action: 'fly' })).status,
      ).toBe(400);
      const mounts = await mountCount(vm.overlayPath);
      expect(
        (await api.post(`/api/admin/desktops/${desktopId}/power`, { action: 'reset' })).status,
      ).toBe(204);
      await rebooted(vm, mounts, 'after power reset');
      await writeThroughGateway(viewer, vm, '/i', 'after-power-reset');
      expect(vm.pid).toBe((await vmOf(desktopId)).pid);
    });

    it('admin "reset desktop" power-resets the VM; the viewer stays attached and sees it reboot', async () => {
      const mounts = await mountCount(vm.overlayPath);
      const r = await api.post(`/api/admin/sessions/${sessionId}/reset`);
      expect(r.status, JSON.stringify(r.body)).toBe(204);
      await rebooted(vm, mounts, 'after admin reset');
      // same VM process, same viewer: the reset did not cut the stream
      expect((await vmOf(desktopId)).pid).toBe(vm.pid);
      expect(viewer.s.connected).toBe(true);
      await writeThroughGateway(viewer, vm, '/j', 'after-admin-reset');
      const audit = (await api.get(`/api/admin/audit?action=desktop.reset&target=${desktopId}`))
        .body as unknown[];
      expect(audit).toHaveLength(1);
    });

    it('log-off discards the overlay; connecting again gives a new, clean machine', async () => {
      const r = await api.post(`/api/sessions/${sessionId}/logoff`);
      expect(r.status).toBe(204);
      await until(
        () => viewer.session.some((m) => m.state === 'ended'),
        10_000,
        'the viewer told the session ended',
      );
      await until(
        async () => (await desktopRow(desktopId)) === undefined,
        15_000,
        'the desktop record to go',
      );
      expect(alive(vm.pid)).toBe(false);
      expect(fs.existsSync(vm.overlayPath)).toBe(false);

      const again = await connect(poolId);
      expect(again.resumed).toBe(false);
      expect(again.desktopId).not.toBe(desktopId);
      const fresh = await vmOf(again.desktopId);
      expect(fresh.pid).not.toBe(vm.pid);
      expect(await guestFile(fresh, '/f')).toBeUndefined();
      // and inside the guest: /data is the golden disk, without the file
      const v = await openViewer(again.sessionId);
      await booted(fresh, 'floating, second desktop');
      await type(v, 'ls /data > /data/ls; sync\n');
      // complete once its last name (sorted) is there; the guest may flush the file in pieces
      const ls = await until(
        async () => {
          const names = (await guestFile(fresh, '/ls'))?.split(/\s+/);
          return names?.includes('origin') ? names : undefined;
        },
        GUEST_TIMEOUT_MS,
        'ls in the new guest',
      );
      expect(ls).toEqual(expect.arrayContaining(['README', 'origin', 'ls']));
      expect(ls).not.toContain('f');

      expect((await api.post(`/api/sessions/${again.sessionId}/logoff`)).status).toBe(204);
      await until(() => !alive(fresh.pid), 15_000, 'the second VM to stop');
      expect(fs.existsSync(fresh.overlayPath)).toBe(false);
    });
  });

  describe('a dedicated pool', () => {
    let poolId = '';
    let sessionId = '';
    let desktopId = '';
    let vm: QemuHandle;
    let viewer: Viewer;
    const token = `dedicated${randomBytes(4).toString('hex')}`;

    it('keeps the disk across log-off: the same desktop comes back with the file', async () => {
      poolId = await createPool('VM dedicated', {
        provider: 'qemu',
        assignment: 'dedicated',
        template,
      });
      ({ sessionId, desktopId } = await connect(poolId));
      vm = await vmOf(desktopId);
      viewer = await openViewer(sessionId);
      await booted(vm, 'dedicated');
      await writeThroughGateway(viewer, vm, '/f', token);

      expect((await api.post(`/api/sessions/${sessionId}/logoff`)).status).toBe(204);
      await until(
        async () => (await desktopRow(desktopId))?.state === 'stopped',
        15_000,
        'the desktop to stop',
      );
      expect((await desktopRow(desktopId))?.handle).toBeNull();
      expect(alive(vm.pid)).toBe(false);
      expect(fs.existsSync(vm.overlayPath)).toBe(true);
      expect(await guestFile(vm, '/f')).toBe(token);

      const again = await connect(poolId);
      expect(again).toMatchObject({ desktopId, resumed: false });
      sessionId = again.sessionId;
      const restarted = await vmOf(desktopId);
      expect(restarted.pid).not.toBe(vm.pid);
      expect(restarted.overlayPath).toBe(vm.overlayPath);
      vm = restarted;
      expect(await guestFile(vm, '/f')).toBe(token);
      viewer = await openViewer(sessionId);
      await booted(vm, 'dedicated, started again');
      await type(viewer, 'cat /data/f > /data/seen; sync\n');
      await until(
        async () => (await guestFile(vm, '/seen')) === token,
        GUEST_TIMEOUT_MS,
        'the guest to read its file back',
      );
    });

    it('survives a server restart: the running VM is re-adopted and the user reconnects to it', async () => {
      await t.close();
      await viewer.closed;
      expect(alive(vm.pid)).toBe(true);
      await start();
      const d = await desktopRow(desktopId);
      expect(d?.state).toBe('in-use');
      expect(handleOf<QemuHandle>(d!).pid).toBe(vm.pid);
      const s = await t.server.broker.session(sessionId);
      expect(s?.state).toBe('disconnected');

      const again = await connect(poolId);
      expect(again).toMatchObject({ sessionId, desktopId, resumed: true });
      viewer = await openViewer(sessionId);
      await framesFlow(viewer, 'after the restart');
      expect(await guestFile(vm, '/f')).toBe(token);
      await writeThroughGateway(viewer, vm, '/after-restart', 'still-here');
      expect(alive(vm.pid)).toBe(true);
    });

    it('a hung guest (QEMU stopped) shows as unresponsive, then active again', async () => {
      process.kill(vm.pid, 'SIGSTOP');
      try {
        await until(
          async () => {
            await healthTick();
            return viewer.session.some((m) => m.state === 'desktop-unresponsive');
          },
          30_000,
          'the viewer told the desktop is unresponsive',
        );
        const msg = viewer.session.find((m) => m.state === 'desktop-unresponsive');
        expect(msg?.reason).toMatch(/QMP/);
        const admin = (await api.get('/api/admin/sessions')).body as Array<{
          id: string;
          desktopState: string;
        }>;
        expect(admin.find((s) => s.id === sessionId)?.desktopState).toBe('unresponsive');
      } finally {
        process.kill(vm.pid, 'SIGCONT');
      }
      viewer.session.length = 0;
      await until(
        async () => {
          await healthTick();
          return viewer.session.some((m) => m.state === 'active');
        },
        30_000,
        'the viewer told the desktop is back',
      );
      await framesFlow(viewer, 'after SIGCONT');
      await writeThroughGateway(viewer, vm, '/after-hang', 'alive');
    });

    it('a crashed guest (QEMU killed) ends the session with a reason; the disk is kept', async () => {
      viewer.session.length = 0;
      process.kill(vm.pid, 'SIGKILL');
      await until(
        () => viewer.session.some((m) => m.state === 'ended'),
        30_000,
        'the viewer told the session ended',
      );
      const ended = viewer.session.find((m) => m.state === 'ended');
      expect(ended?.reason).toMatch(/desktop lost/);
      const s = await t.server.broker.session(sessionId);
      expect(s).toMatchObject({
        state: 'ended',
        ended_reason: expect.stringMatching(/desktop lost/),
      });
      await until(
        async () => (await desktopRow(desktopId))?.state === 'stopped',
        15_000,
        'the desktop to be stopped',
      );
      expect(await guestFile(vm, '/f')).toBe(token);
    });

    it('deleting the pool removes the kept disk', async () => {
      expect((await api.del(`/api/admin/pools/${poolId}`)).status).toBe(204);
      expect(await desktopRow(desktopId)).toBeUndefined();
      expect(fs.existsSync(vm.overlayPath)).toBe(false);
    });
  });

  describe('a vnc pool', () => {
    it('streams an existing Xvnc with the password from the template; log-off leaves it running', async () => {
      const port = await freePort();
      let display = 40;
      while (fs.existsSync(`/tmp/.X11-unix/X${display}`) || fs.existsSync(`/tmp/.X${display}-lock`))
        display++;
      const pwFile = path.join(dirs.dataDir, 'xvnc.passwd');
      const password = 'vdi-pw1';
      const pw = spawn('vncpasswd', ['-f'], { stdio: ['pipe', 'pipe', 'inherit'] });
      const chunks: Buffer[] = [];
      pw.stdout.on('data', (c: Buffer) => chunks.push(c));
      pw.stdin.end(`${password}\n`);
      await new Promise((r) => pw.once('exit', r));
      fs.writeFileSync(pwFile, Buffer.concat(chunks), { mode: 0o600 });
      // its unix socket too, in a directory of its own (not the server's)
      const labDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-lab-'));
      const labSocket = path.join(labDir, 'rfb.sock');
      xvnc = spawn(
        'Xvnc',
        [
          `:${display}`,
          '-rfbunixpath',
          labSocket,
          '-rfbunixmode',
          '0600',
          '-rfbport',
          String(port),
          '-localhost',
          '-SecurityTypes',
          'VncAuth',
          '-PasswordFile',
          pwFile,
          '-geometry',
          '640x480',
          '-depth',
          '24',
        ],
        { stdio: 'ignore' },
      );
      const xpid = xvnc.pid!;
      const listening = async () => {
        const { stdout } = await run('ss', ['-Hltn', `sport = :${port}`]);
        // the local address column of each listening socket
        return stdout
          .split('\n')
          .filter(Boolean)
          .map((l) => l.trim().split(/\s+/)[3]);
      };
      await until(async () => (await listening()).length > 0, 15_000, 'Xvnc listening');
      // loopback only (-localhost): 127.0.0.1, and ::1 where IPv6 is up
      expect(await listening()).toEqual(expect.arrayContaining([`127.0.0.1:${port}`]));
      for (const addr of await listening())
        expect([`127.0.0.1:${port}`, `[::1]:${port}`]).toContain(addr);

      const poolId = await createPool('Existing machine', {
        provider: 'vnc',
        template: { hosts: [{ host: '127.0.0.1', port, password, name: 'lab-pc' }] },
      });
      const { sessionId, desktopId } = await connect(poolId);
      const v = await openViewer(sessionId);
      expect(v.attach).toMatchObject({ ok: true, width: 640, height: 480 });
      await until(() => v.frames.length > 0, 10_000, 'frames from the Xvnc');
      await run('xsetroot', ['-solid', '#336699'], {
        env: { ...process.env, DISPLAY: `:${display}` },
      });
      await framesFlow(v, 'after xsetroot');
      const sessions = (await api.get('/api/admin/sessions')).body as Array<{
        id: string;
        facts: Record<string, string>;
      }>;
      expect(sessions.find((s) => s.id === sessionId)?.facts).toMatchObject({
        host: `127.0.0.1:${port}`,
        auth: 'VNC password',
        name: 'lab-pc',
      });
      expect(JSON.stringify(sessions)).not.toContain(password);

      expect((await api.post(`/api/sessions/${sessionId}/logoff`)).status).toBe(204);
      await until(
        async () => (await desktopRow(desktopId)) === undefined,
        10_000,
        'the desktop record to go',
      );
      expect(alive(xpid)).toBe(true);
      // the machine can be used again
      const again = await connect(poolId);
      const v2 = await openViewer(again.sessionId);
      await until(() => v2.frames.length > 0, 10_000, 'frames again');
      expect((await api.post(`/api/sessions/${again.sessionId}/logoff`)).status).toBe(204);
      expect(alive(xpid)).toBe(true);

      // the password is what lets us in: a pool with a wrong one gets no picture
      const wrongPool = await createPool('Wrong password', {
        provider: 'vnc',
        template: { hosts: [{ host: '127.0.0.1', port, password: 'nope' }] },
      });
      const wrong = await connect(wrongPool);
      const s = viewers.open(t.url, { cookie: api.cookie });
      await connected(s);
      const refused = await attach(s, { sessionId: wrong.sessionId });
      expect(refused).toMatchObject({ ok: false });
      expect((await api.post(`/api/sessions/${wrong.sessionId}/logoff`)).status).toBe(204);
      expect(alive(xpid)).toBe(true);

      // the same machine by its unix socket
      const socketPool = await createPool('By its socket', {
        provider: 'vnc',
        template: { hosts: [{ socket: labSocket, password, name: 'lab-pc-socket' }] },
      });
      const bySocket = await connect(socketPool);
      const v3 = await openViewer(bySocket.sessionId);
      expect(v3.attach).toMatchObject({ ok: true, width: 640, height: 480 });
      await run('xsetroot', ['-solid', '#993366'], {
        env: { ...process.env, DISPLAY: `:${display}` },
      });
      await framesFlow(v3, 'over the unix socket');
      expect((await api.post(`/api/sessions/${bySocket.sessionId}/logoff`)).status).toBe(204);
      fs.rmSync(labDir, { recursive: true, force: true });

      // a socket inside the server's own run directory (its desktops' private sockets): refused
      const own = await api.post('/api/admin/pools', {
        name: 'Own socket',
        maxSize: 1,
        provider: 'vnc',
        template: { hosts: [{ socket: path.join(dirs.runDir, 'some-desktop', 'rfb.sock') }] },
      });
      expect(own.status).toBe(400);
      expect(JSON.stringify(own.body)).toContain('VNC_OWN_SOCKET');
    });
  });

  it('never wrote to the golden image', async () => {
    expect(await sha256File(template.image)).toBe(goldenSha);
    expect(fs.statSync(template.image).mode & 0o222).toBe(0);
  });
});
