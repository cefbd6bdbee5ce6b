/**
 * A desktop that means harm, next to a real one. User "mallory"'s desktop is a malicious VNC
 * server (its own Node process on a real unix socket: test/helpers/hostile-vnc-server.mjs),
 * reached through the real server and a real Socket.IO viewer; the admin's desktop is a real
 * Xvnc whose picture keeps changing. For each kind of hostile input the gateway must end the
 * hostile link with a reason the viewer is told, while /healthz answers promptly, the event
 * loop is not blocked, memory stays bounded and the admin's viewer keeps getting frames.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionStatusMsg } from '@vdi/shared';
import { desktopHandle, expectNoXvncLeft, xInvocation, xvncProvider } from '../helpers/desktops.js';
import { HostileProvider, startHostileServer, type HostileServer } from '../helpers/hostile.js';
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
  attach,
  connected,
  receiveFrames,
  Viewers,
  type ReceivedFrame,
  type ViewerSocket,
} from '../helpers/viewer.js';

const run = promisify(execFile);
const FLOODER = path.resolve(import.meta.dirname, '../helpers/clipboard-flooder.mjs');
const MiB = 1024 * 1024;
/** the gateway gives up on a desktop that leaves its input unread, or a message unfinished */
const STALL_MS = 2000;

interface Figures {
  healthzMaxMs: number;
  loopDelayMaxMs: number;
  rssGrowthMiB: number;
  heapGrowthMiB: number;
  externalGrowthMiB: number;
  otherFrames: number;
  otherMaxGapMs: number;
}

describe('a hostile desktop next to a real one', () => {
  const dirs = tempDirs('hostile');
  const socketPath = path.join(dirs.runDir, 'hostile.sock');
  let t: TestServer;
  let admin: Api;
  let mallory: Api;
  let otherSession = '';
  let hostileSession = '';
  let hostileDesktop = '';
  const viewers = new Viewers();
  let otherFrames: ReceivedFrame[] = [];
  let changing = true;
  let changer: Promise<void> = Promise.resolve();
  let hostile: HostileServer | undefined;
  const figures: Record<string, Figures> = {};

  beforeAll(async () => {
    const config = testConfig(
      {
        DEFAULT_GEOMETRY: '640x480',
        RFB_SEND_STALL_MS: String(STALL_MS),
        RFB_MESSAGE_TIMEOUT_MS: String(STALL_MS),
      },
      dirs,
    );
    t = await startServer(config, {
      providers: [xvncProvider(config, 70), new HostileProvider(socketPath)],
    });
    admin = await new Api(t.url).login(ADMIN.username, ADMIN.password);
    // the admin's real desktop, its picture changing all the time
    const pools = (await admin.get('/api/desktops')).body as { poolId: string }[];
    const c = await admin.post(`/api/pools/${pools[0]!.poolId}/connect`);
    otherSession = c.body.sessionId;
    const handle = await desktopHandle(t, c.body.desktopId);
    const other = viewers.open(t.url, { cookie: admin.cookie });
    otherFrames = receiveFrames(other);
    await connected(other);
    // an Xvnc desktop has sound (its own PulseAudio): the viewer is told it may ask
    expect(await attach(other, { sessionId: otherSession })).toMatchObject({
      ok: true,
      sound: true,
    });
    changer = (async () => {
      for (let i = 0; changing; i++) {
        const colour = ((i * 0x0f1f2f) & 0xffffff).toString(16).padStart(6, '0');
        const x = xInvocation(handle, ['xsetroot', '-solid', `#${colour}`]);
        await run(x.file, x.args, { env: x.env }).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 30));
      }
    })();
    await until(() => otherFrames.length > 5, 15_000, "the admin's first frames");

    // mallory's desktop: whatever serves hostile.sock
    await admin.post('/api/admin/users', {
      username: 'mallory',
      password: 'mallory-pass-1',
      role: 'user',
    });
    const pool = await admin.post('/api/admin/pools', {
      name: 'hostile',
      provider: 'vnc',
      template: { hosts: [{ host: '127.0.0.1', port: 5999 }], clipboardMaxBytes: MiB },
      maxSize: 1,
    });
    expect(pool.status).toBe(201);
    const me = (await new Api(t.url).login('mallory', 'mallory-pass-1')).cookie;
    const users = (await admin.get('/api/admin/users')).body as { id: string; username: string }[];
    await admin.post('/api/admin/entitlements', {
      poolId: pool.body.id,
      principalType: 'user',
      principalId: users.find((u) => u.username === 'mallory')!.id,
    });
    mallory = new Api(t.url);
    mallory.cookie = me;
    const s = await mallory.post(`/api/pools/${pool.body.id}/connect`);
    expect(s.status).toBeLessThan(300);
    hostileSession = s.body.sessionId;
    hostileDesktop = s.body.desktopId;
  });

  afterAll(async () => {
    changing = false;
    await changer;
    viewers.closeAll();
    await stopHostile();
    await admin.post(`/api/sessions/${otherSession}/logoff`);
    await mallory?.post(`/api/sessions/${hostileSession}/logoff`);
    await t.close();
    console.log(
      'hostile-desktop figures:\n' +
        Object.entries(figures)
          .map(
            ([k, f]) =>
              `  ${k}: /healthz max ${f.healthzMaxMs.toFixed(0)} ms, event-loop delay max ${f.loopDelayMaxMs.toFixed(0)} ms, ` +
              `RSS +${f.rssGrowthMiB.toFixed(1)} MiB, heap +${f.heapGrowthMiB.toFixed(1)} MiB, external +${f.externalGrowthMiB.toFixed(1)} MiB, ` +
              `other viewer ${f.otherFrames} frames (longest gap ${f.otherMaxGapMs} ms)`,
          )
          .join('\n'),
    );
    expectNoXvncLeft(dirs);
  });

  async function stopHostile(): Promise<void> {
    await hostile?.stop();
    hostile = undefined;
  }

  /** Mallory's viewer, attached or refused; records what it is told. */
  async function hostileViewer(): Promise<{
    socket: ViewerSocket;
    attached: { ok: boolean; code?: string; message?: string };
    statuses: SessionStatusMsg[];
    errors: { code: string; message: string }[];
  }> {
    const socket = viewers.open(t.url, { cookie: mallory.cookie });
    const statuses: SessionStatusMsg[] = [];
    const errors: { code: string; message: string }[] = [];
    socket.on('session', (m) => statuses.push(m));
    socket.on('error', (m) => errors.push(m));
    receiveFrames(socket);
    await connected(socket);
    const attached = await attach(socket, { sessionId: hostileSession }, 30_000);
    return { socket, attached, statuses, errors };
  }

  /**
   * Run one hostile scenario: the malicious server plays `scenario`, `body` drives the
   * hostile viewer until the gateway has dealt with it, and meanwhile /healthz, the event
   * loop, memory and the admin's viewer are measured.
   */
  async function scenario(name: string, body: () => Promise<void>): Promise<Figures> {
    hostile = await startHostileServer(socketPath, name);
    global.gc?.();
    const base = process.memoryUsage();
    // `external` counts ArrayBuffers (Buffers) already: arrayBuffers is a part of it, not more
    const peak = { rss: base.rss, heap: base.heapUsed, ext: base.external };
    const sampler = setInterval(() => {
      const m = process.memoryUsage();
      peak.rss = Math.max(peak.rss, m.rss);
      peak.heap = Math.max(peak.heap, m.heapUsed);
      peak.ext = Math.max(peak.ext, m.external);
    }, 20);
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    let polling = true;
    let healthzMaxMs = 0;
    const poller = (async () => {
      while (polling) {
        const t0 = performance.now();
        const r = await fetch(`${t.url}/healthz`);
        expect(r.status).toBe(200);
        healthzMaxMs = Math.max(healthzMaxMs, performance.now() - t0);
        await new Promise((r2) => setTimeout(r2, 20));
      }
    })();
    const framesBefore = otherFrames.length;
    const startedAt = Date.now();
    try {
      await body();
      // and after the attack, the admin's viewer still gets new frames
      const after = otherFrames.length;
      await until(() => otherFrames.length >= after + 3, 10_000, "the admin's frames after");
    } finally {
      polling = false;
      await poller;
      clearInterval(sampler);
      loop.disable();
      await stopHostile();
      t.server.gateway.streams.drop(hostileDesktop, 'scenario over');
      record();
    }
    const f = figures[name]!;
    expect(f.healthzMaxMs, '/healthz answered promptly').toBeLessThan(1500);
    expect(f.otherFrames, "the admin's viewer got frames").toBeGreaterThanOrEqual(3);
    expect(f.otherMaxGapMs, "the admin's viewer was never frozen").toBeLessThan(3000);
    expect(f.externalGrowthMiB, 'buffers stayed bounded').toBeLessThan(96);
    expect(f.heapGrowthMiB, 'heap stayed bounded').toBeLessThan(96);
    return f;

    /** the figures, kept even when the scenario failed */
    function record(): void {
      // the admin's viewer kept getting frames the whole time
      const during = otherFrames.slice(framesBefore).map((f) => f.at);
      const gaps = [startedAt, ...during, Date.now()].slice(1).map((at, i, all) => {
        const prev = i === 0 ? startedAt : all[i - 1]!;
        return at - prev;
      });
      const f: Figures = {
        healthzMaxMs,
        loopDelayMaxMs: loop.max / 1e6,
        rssGrowthMiB: (peak.rss - base.rss) / MiB,
        heapGrowthMiB: (peak.heap - base.heapUsed) / MiB,
        externalGrowthMiB: (peak.ext - base.external) / MiB,
        otherFrames: during.length,
        otherMaxGapMs: Math.max(...gaps),
      };
      figures[name] = f;
    }
  }

  /** the hostile viewer is told its desktop was lost, with this reason */
  const lostWith = (statuses: SessionStatusMsg[], reason: RegExp) =>
    until(
      () => statuses.some((s) => s.state === 'desktop-lost' && reason.test(s.reason ?? '')),
      30_000,
      `desktop-lost ${reason}`,
    );

  it('a desktop that reads nothing and floods empty updates is cut off', async () => {
    await scenario('no-read-empty-updates', async () => {
      const v = await hostileViewer();
      expect(v.attached.ok).toBe(true);
      await lostWith(v.statuses, /far more messages than a desktop does/);
      v.socket.close();
    });
  });

  it('a desktop that reads nothing and floods fence requests is cut off', async () => {
    await scenario('no-read-fences', async () => {
      const v = await hostileViewer();
      expect(v.attached.ok).toBe(true);
      await lostWith(v.statuses, /stopped accepting input|far more messages/);
      v.socket.close();
    });
  });

  it('a browser pasting 1 MB clipboards into a desktop that reads nothing', async () => {
    let told: { errors: Record<string, number>; lost: string[] } | undefined;
    await scenario('no-read', async () => {
      // the browser is its own process, so its buffers are not counted as the server's
      const { stdout } = await run(
        process.execPath,
        [FLOODER, t.url, mallory.cookie, hostileSession, '1000', '1000000'],
        { timeout: 120_000, maxBuffer: 1024 * 1024 },
      );
      told = JSON.parse(stdout.trim().split('\n').at(-1)!) as typeof told;
    });
    // refused by the byte budget and the desktop's full buffer, then the link was dropped
    expect((told!.errors.INPUT_RATE ?? 0) + (told!.errors.DESKTOP_BUSY ?? 0)).toBeGreaterThan(0);
    expect(told!.lost.some((r) => /stopped accepting input/.test(r))).toBe(true);
  });

  it('30 clipboards of 10 MiB from the desktop are not passed on, nor held', async () => {
    await scenario('clipboard-flood', async () => {
      const v = await hostileViewer();
      expect(v.attached.ok).toBe(true);
      const texts: string[] = [];
      v.socket.on('clipboard', (m) => texts.push(m.text));
      await until(
        () => v.errors.filter((e) => e.code === 'CLIPBOARD_TOO_LARGE').length >= 30,
        60_000,
        '30 refusals',
      );
      expect(texts).toEqual([]);
      expect(v.errors[0]!.message).toMatch(/10485760 bytes.*1048576 bytes/);
      v.socket.close();
    });
  });

  it('a 16384×16384 ServerInit is refused with a reason the viewer shows', async () => {
    await scenario('huge-init', async () => {
      const v = await hostileViewer();
      expect(v.attached).toEqual({
        ok: false,
        code: 'DESKTOP_TOO_LARGE',
        message:
          "the desktop's screen is 16384×16384 (268.4 megapixels); this pool allows at most 8192×8192 and 16.8 megapixels",
      });
      v.socket.close();
    });
  });

  it('a resize to 16384×16384 after attach drops the link with that reason', async () => {
    await scenario('huge-resize', async () => {
      const v = await hostileViewer();
      expect(v.attached.ok).toBe(true);
      await lostWith(v.statuses, /16384×16384/);
      v.socket.close();
    });
  });

  it('200 resizes to 2048² in a row do not block the event loop', async () => {
    const f = await scenario('resize-churn', async () => {
      const v = await hostileViewer();
      expect(v.attached.ok).toBe(true);
      const stream = t.server.gateway.streams.get(hostileDesktop)!;
      await until(() => stream.width === 2048, 10_000, 'the last size applied');
      expect(stream.reallocations).toBeLessThanOrEqual(3);
      v.socket.close();
    });
    expect(f.loopDelayMaxMs).toBeLessThan(500);
  });

  it('a rectangle drip-fed a byte every 50 ms is timed out', async () => {
    await scenario('drip', async () => {
      const v = await hostileViewer();
      expect(v.attached.ok).toBe(true);
      await lostWith(v.statuses, /did not answer in time/);
      v.socket.close();
    });
  });
});
