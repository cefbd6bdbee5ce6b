/**
 * The Xvnc provider's isolation pieces one by one, on real Xvnc desktops started straight
 * from the provider (no server): network modes, limits written to the cgroup, the home disk
 * quota, health of a stopped Xvnc, uid allocation shared by several servers, the sweep of a
 * sandbox no record accounts for, and the X display retry of desktops sharing the host's /tmp.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XvncTemplate } from '@vdi/shared';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import { XvncProvider } from '../../src/providers/xvnc/provider.js';
import { UidAllocator } from '../../src/providers/sandbox/accounts.js';
import { alive, expectNoXvncLeft } from '../helpers/desktops.js';
import { tempDirs, until } from '../helpers/server.js';

const run = promisify(execFile);
const dirs = tempDirs('vdisbx');
const silent = pino({ level: 'silent' });
/** a private uid lock dir and range, so this file's accounts never meet another file's */
const lockDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-uidlocks-'));
const uidRange = { base: 410_000, count: 50 };
const started: Array<{ p: XvncProvider; h: XvncHandle }> = [];

function provider(over: Partial<ConstructorParameters<typeof XvncProvider>[0]> = {}) {
  return new XvncProvider({ ...dirs, uidRange, uidLockDir: lockDir, ...over });
}

async function start(
  p: XvncProvider,
  template: Record<string, unknown> = {},
  log = silent,
): Promise<XvncHandle> {
  const h = (await p.create(
    {
      desktopId: randomUUID(),
      poolId: 'pool',
      template: XvncTemplate.parse({ width: 640, height: 480, ...template }),
      persistent: false,
    },
    log,
  )) as unknown as XvncHandle;
  started.push({ p, h });
  return h;
}

async function stop(p: XvncProvider, h: XvncHandle): Promise<void> {
  await p.destroy(h as never, silent);
  started.splice(
    started.findIndex((s) => s.h === h),
    1,
  );
}

/** runs a shell command inside a sandboxed desktop, as its account; resolves with OK/DENIED */
function inside(h: XvncHandle, cmd: string): Promise<'OK' | 'DENIED'> {
  return run(
    'nsenter',
    [
      '-t',
      String(h.xvncPid),
      '-m',
      '-n',
      '--',
      'setpriv',
      `--reuid=${h.account!.uid}`,
      `--regid=${h.account!.gid}`,
      '--clear-groups',
      'bash',
      '-c',
      cmd,
    ],
    { timeout: 20_000 },
  ).then(
    () => 'OK' as const,
    () => 'DENIED' as const,
  );
}

function listen(host: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const s = net.createServer((c) => c.end('hello\n'));
    s.once('error', reject);
    s.listen(0, host, () => resolve(s));
  });
}
const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;

let loopback: net.Server;
let outside: net.Server;
let outsideAddress = '';

beforeAll(async () => {
  expect(process.getuid?.(), 'sandboxes need root').toBe(0);
  outsideAddress = Object.values(os.networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)!.address;
  loopback = await listen('127.0.0.1');
  outside = await listen(outsideAddress);
});

afterAll(async () => {
  try {
    loopback?.close();
    outside?.close();
    for (const { p, h } of started.splice(0)) await p.destroy(h as never, silent).catch(() => {});
  } finally {
    expectNoXvncLeft(dirs);
    fs.rmSync(lockDir, { recursive: true, force: true });
  }
});

describe('network per pool', () => {
  const tcp = (host: string, port: number) =>
    `timeout 5 bash -c 'exec 3<>/dev/tcp/${host}/${port}; head -1 <&3' | grep -q hello`;

  it('outbound reaches the outside but not the host loopback; none reaches neither; host reaches both', async () => {
    const p = provider();
    const [out, none, host] = [
      await start(p, { network: 'outbound' }),
      await start(p, { network: 'none' }),
      await start(p, { network: 'host' }),
    ];
    const reach = async (h: XvncHandle) => ({
      outside: await inside(h, tcp(outsideAddress, portOf(outside))),
      loopback: await inside(h, tcp('127.0.0.1', portOf(loopback))),
    });
    expect(await reach(out)).toEqual({ outside: 'OK', loopback: 'DENIED' });
    expect(await reach(none)).toEqual({ outside: 'DENIED', loopback: 'DENIED' });
    expect(await reach(host)).toEqual({ outside: 'OK', loopback: 'OK' });
    // slirp4netns lives exactly as long as the outbound desktop
    const slirp = () =>
      fs
        .readdirSync('/proc')
        .filter((e) => /^\d+$/.test(e))
        .filter((e) => {
          try {
            const argv = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
            return argv[0] === 'slirp4netns' && argv.includes(String(out.initPid));
          } catch {
            return false;
          }
        });
    expect(slirp()).toHaveLength(1);
    for (const h of [out, none, host]) await stop(p, h);
    expect(slirp()).toHaveLength(0);
  });
});

describe('limits', () => {
  it("writes the pool's CPU, memory and process limits to the desktop's cgroup and removes it at the end", async () => {
    const p = provider();
    const h = await start(p, {
      limits: { cpuWeight: 50, cpuMax: 0.5, memoryMb: 300, pids: 64 },
    });
    const dirs_ = h.cgroup!.dirs;
    const read = (ctl: string, file: string) =>
      fs
        .readFileSync(
          path.join(
            dirs_.find((d) => d.includes(`/${ctl}/`))!,
            file,
          ),
          'utf8',
        )
        .trim();
    // this machine kind: cgroup v1 controllers (the v2 names when the host is pure v2)
    if (dirs_.some((d) => d.includes('/memory/'))) {
      expect(read('memory', 'memory.limit_in_bytes')).toBe(String(300 * 1024 * 1024));
      expect(read('pids', 'pids.max')).toBe('64');
      expect(read('cpu', 'cpu.shares')).toBe('512');
      expect(read('cpu', 'cpu.cfs_quota_us')).toBe('50000');
    }
    // every process of the desktop is in it, and nothing else
    const members = fs
      .readFileSync(path.join(dirs_[0]!, 'cgroup.procs'), 'utf8')
      .trim()
      .split('\n')
      .map(Number);
    expect(members).toEqual(expect.arrayContaining([h.xvncPid, h.sessionPid, h.supervisorPid!]));
    expect(members).not.toContain(process.pid);
    await stop(p, h);
    for (const d of dirs_) expect(fs.existsSync(d), d).toBe(false);
  });

  it('gives a home with a disk quota its own file system: writes beyond it fail, the desktop lives on', async () => {
    const p = provider();
    const h = await start(p, { limits: { diskMb: 24 } });
    const mounted = () =>
      fs
        .readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .some((l) => l.split(' ')[4] === h.home);
    expect(mounted()).toBe(true);
    const home = `/home/${h.account!.name}`;
    expect(await inside(h, `head -c 8M /dev/zero > ${home}/small && sync`)).toBe('OK');
    expect(await inside(h, `head -c 40M /dev/zero > ${home}/big`)).toBe('DENIED');
    // what was written up to the quota is there; the host's disk was not touched
    expect(fs.statSync(path.join(h.home, 'big')).size).toBeLessThan(24 * 1024 * 1024);
    expect(alive(h.xvncPid)).toBe(true);
    await stop(p, h);
    expect(mounted()).toBe(false);
    expect(fs.existsSync(path.dirname(h.home))).toBe(false);
  });
});

describe('health', () => {
  it('says unresponsive while the sandboxed Xvnc is stopped, running again after SIGCONT', async () => {
    const p = provider();
    const h = await start(p);
    expect(await p.health(h as never)).toEqual({ state: 'running' });
    expect(p.endpoint(h as never)).toMatchObject({ kind: 'unix', serverUid: h.account!.uid });
    process.kill(h.xvncPid, 'SIGSTOP');
    try {
      await until(
        async () => (await p.health(h as never)).state === 'unresponsive',
        10_000,
        'unresponsive',
      );
    } finally {
      process.kill(h.xvncPid, 'SIGCONT');
    }
    await until(async () => (await p.health(h as never)).state === 'running', 10_000, 'running');
    await stop(p, h);
    expect(await p.health(h as never)).toMatchObject({ state: 'dead' });
  });
});

describe('accounts', () => {
  it('never gives one uid to two desktops, even from two servers at once', async () => {
    const a = provider({ runDir: dirs.runDir });
    const otherRun = fs.mkdtempSync(path.join(os.tmpdir(), 'vdisbx2r-'));
    const b = new XvncProvider({
      runDir: otherRun,
      dataDir: dirs.dataDir,
      uidRange,
      uidLockDir: lockDir,
    });
    try {
      const hs = await Promise.all([start(a), start(b), start(a), start(b)]);
      const uids = hs.map((h) => h.account!.uid);
      expect(new Set(uids).size).toBe(4);
      for (const uid of uids) expect(fs.existsSync(path.join(lockDir, String(uid)))).toBe(true);
      for (const h of hs) await stop(hs.indexOf(h) % 2 === 0 ? a : b, h);
      for (const uid of uids) expect(fs.existsSync(path.join(lockDir, String(uid)))).toBe(false);
    } finally {
      fs.rmSync(otherRun, { recursive: true, force: true });
    }
  });

  it("reclaims the lock of a server whose run directory is gone, not a live server's", () => {
    const range = { base: 410_900, count: 1 };
    const goneRun = fs.mkdtempSync(path.join(os.tmpdir(), 'vdisbx-gone-'));
    const gone = new UidAllocator(range, goneRun, 'xvnc', lockDir);
    const live = new UidAllocator(range, dirs.runDir, 'xvnc', lockDir);
    expect(gone.allocate('d-gone').uid).toBe(410_900);
    expect(() => live.allocate('d-live')).toThrow(/in use/);
    fs.rmSync(goneRun, { recursive: true });
    expect(live.allocate('d-live').uid).toBe(410_900);
    expect(live.holds(410_900, 'd-live')).toBe(true);
    live.release(410_900, 'd-live');
  });
});

describe('sweep', () => {
  it('stops a sandbox no record accounts for: its processes, cgroup and account', async () => {
    const p = provider();
    const h = await start(p);
    const uid = h.account!.uid;
    // a new server on the same directories that knows of no desktop
    const removed = await provider().sweep([], silent);
    started.splice(0, started.length, ...started.filter((s) => s.h !== h));
    expect(removed).toBeGreaterThanOrEqual(1);
    await until(() => !alive(h.xvncPid) && !alive(h.supervisorPid!), 10_000, 'the sandbox to end');
    for (const d of h.cgroup!.dirs) expect(fs.existsSync(d), d).toBe(false);
    expect(fs.existsSync(path.join(lockDir, String(uid)))).toBe(false);
  });
});

describe('desktops sharing the host /tmp (account isolation)', () => {
  /**
   * A provider whose free-display check misses every display taken, as when another server
   * takes one between our check and Xvnc's start: Xvnc itself then finds it taken.
   */
  class RacingProvider extends XvncProvider {
    protected override displayInUse(): boolean {
      return false;
    }
  }

  it('retries on the next display when Xvnc says "Server is already active for display N"', async () => {
    const warnings: string[] = [];
    const log = pino(
      { level: 'warn' },
      { write: (line: string) => void warnings.push((JSON.parse(line) as { msg: string }).msg) },
    );
    const p = provider({ isolation: 'account', firstDisplay: 690 });
    const taken = await start(p);
    expect(taken.isolation).toBe('account');
    const racing = new RacingProvider({
      ...dirs,
      uidRange,
      uidLockDir: lockDir,
      isolation: 'account',
      firstDisplay: taken.display,
    });
    const h = await start(racing, {}, log);
    expect(h.display).not.toBe(taken.display);
    expect(warnings).toContain('X display taken, trying the next one');
    expect(await racing.health(h as never)).toEqual({ state: 'running' });
    expect(await p.health(taken as never)).toEqual({ state: 'running' });
    // both desktops have their own account and cookie: the other's X display refuses them
    expect(h.account!.uid).not.toBe(taken.account!.uid);
    const asOther = await run(
      'setpriv',
      [
        `--reuid=${h.account!.uid}`,
        `--regid=${h.account!.gid}`,
        '--clear-groups',
        'xwd',
        '-root',
        '-silent',
        '-display',
        `:${taken.display}`,
      ],
      {
        env: { ...process.env, XAUTHORITY: h.xEnv!.XAUTHORITY },
        encoding: 'buffer',
        timeout: 10_000,
      },
    ).then(
      () => 'OK',
      () => 'DENIED',
    );
    expect(asOther).toBe('DENIED');
    await stop(racing, h);
    await stop(p, taken);
  });
});
