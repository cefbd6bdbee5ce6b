/**
 * Every desktop a sealed tenant (docs/architecture.md, decision 10), tried from inside: the
 * real server (as root) runs two sandboxed Xvnc desktops for two users; commands typed into
 * desktop A's terminal through its own viewer (keysyms through the gateway) try to reach
 * desktop B's screen, windows, clipboard, home, /tmp, processes and sockets, the server's
 * data, and the host's loopback services. Every attempt must fail, while the same attempts on
 * A's own things (the controls) succeed, so the test can fail. Then a memory hog and a fork
 * bomb in A meet A's limits while A and B keep streaming, and A's log off leaves nothing of
 * A's account running.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import {
  alive,
  desktopHandle,
  expectNoXvncLeft,
  PARKED_BROKER,
  startXvncServer,
  xInvocation,
} from '../helpers/desktops.js';
import { ADMIN, Api, tempDirs, testConfig, until, type TestServer } from '../helpers/server.js';
import {
  receiveFrames,
  Viewers,
  type AttachedViewer,
  type ReceivedFrame,
} from '../helpers/viewer.js';

const run = promisify(execFile);

const dirs = tempDirs('vdiiso');
const viewers = new Viewers();
/** the pool's limits: small enough to reach quickly, big enough for Xvnc, Openbox and xterm */
const MEMORY_MB = 384;
const PIDS = 96;

let ts: TestServer;
let admin: Api;
let poolId = '';

interface Desk {
  user: { name: string; api: Api };
  sessionId: string;
  desktopId: string;
  h: XvncHandle;
  viewer: AttachedViewer;
  frames: ReceivedFrame[];
}
let A: Desk;
let B: Desk;

/** a TCP service on the host's loopback, like PostgreSQL or Redis: A must not reach it */
let loopbackService: net.Server;
/** a TCP service on the host's network address: "the outside", which A may reach */
let outsideService: net.Server;
let outsideAddress = '';

function listen(host: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const s = net.createServer((c) => c.end('hello\n'));
    s.once('error', reject);
    s.listen(0, host, () => resolve(s));
  });
}
const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;

/** Runs an X client on a desktop from the host (as root, through its namespaces). */
async function x(d: Desk, argv: string[], input?: string): Promise<string> {
  const inv = xInvocation(d.h, argv);
  if (input === undefined)
    return (await run(inv.file, inv.args, { env: inv.env, timeout: 10_000 })).stdout;
  return new Promise((resolve, reject) => {
    const c = spawn(inv.file, inv.args, { env: inv.env, stdio: ['pipe', 'ignore', 'ignore'] });
    c.once('error', reject);
    c.once('spawn', () => resolve(''));
    c.stdin.end(input);
  });
}

/** X keysyms of the characters typed here: Latin-1 maps to itself, a newline is Return */
const RETURN = 0xff0d;
function keysymOf(ch: string): number {
  if (ch === '\n') return RETURN;
  const code = ch.charCodeAt(0);
  if (code < 0x20 || code > 0x7e) throw new Error(`cannot type ${JSON.stringify(ch)}`);
  return code;
}

/** Types into the desktop's focused window through its viewer: the user's own keyboard. */
function typeInto(d: Desk, text: string): void {
  for (const ch of text) {
    const keysym = keysymOf(ch);
    d.viewer.socket.emit('key', { keysym, down: true });
    d.viewer.socket.emit('key', { keysym, down: false });
  }
}

const homeFile = (d: Desk, name: string) => path.join(d.h.home, name);
const readHome = (d: Desk, name: string) =>
  fs.existsSync(homeFile(d, name)) ? fs.readFileSync(homeFile(d, name), 'utf8') : undefined;
/** writes a file into a desktop's home as its own account */
function plant(d: Desk, name: string, text: string, mode = 0o600): void {
  fs.writeFileSync(homeFile(d, name), text, { mode });
  fs.chownSync(homeFile(d, name), d.h.account!.uid, d.h.account!.gid);
}

/** the cgroup directory of a controller (read straight from the handle, not via the provider) */
function cgroupFile(d: Desk, controller: string, file: string): string {
  const dir = d.h.cgroup!.dirs.find(
    (p) => fs.existsSync(path.join(p, file)) && p.includes(`/${controller}`),
  );
  if (!dir)
    throw new Error(`no ${controller} cgroup with ${file} in ${d.h.cgroup!.dirs.join(' ')}`);
  return path.join(dir, file);
}
const readCg = (d: Desk, controller: string, file: string) =>
  fs.readFileSync(cgroupFile(d, controller, file), 'utf8');

/** pids of live processes running as `uid` */
function processesOf(uid: number): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const m = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(fs.readFileSync(`/proc/${e}/status`, 'utf8'));
      if (m?.slice(1).some((u) => Number(u) === uid) && alive(Number(e))) out.push(Number(e));
    } catch {
      /* exited while we looked */
    }
  }
  return out;
}

/** new frames arrive on the viewer after `change` alters the screen */
async function streams(d: Desk, change: () => Promise<unknown>, what: string): Promise<void> {
  const before = d.frames.length;
  await change();
  await until(() => d.frames.length > before, 15_000, `frames for ${what}`);
}

async function newDesk(name: string): Promise<Desk> {
  const password = `${name}-password-1`;
  const u = await admin.post('/api/admin/users', { username: name, password });
  expect(u.status).toBe(201);
  await admin.post('/api/admin/entitlements', {
    poolId,
    principalType: 'user',
    principalId: u.body.id,
  });
  const api = await new Api(ts.url).login(name, password);
  const c = await api.post(`/api/pools/${poolId}/connect`);
  expect(c.status, JSON.stringify(c.body)).toBe(200);
  const viewer = await viewers.attached(ts.url, api.cookie, c.body.sessionId);
  const frames = receiveFrames(viewer.socket);
  const h = await desktopHandle(ts, c.body.desktopId);
  const d: Desk = {
    user: { name, api },
    sessionId: c.body.sessionId,
    desktopId: c.body.desktopId,
    h,
    viewer,
    frames,
  };
  // the session's terminal is up (and, as the window manager's first window, focused)
  await until(
    async () => (await x(d, ['xdotool', 'search', '--class', 'xterm'])).trim().length > 0,
    15_000,
    `${name}'s terminal`,
  );
  return d;
}

beforeAll(async () => {
  expect(process.getuid?.(), 'the isolation suite needs root (npm test runs as root)').toBe(0);
  ts = await startXvncServer(testConfig(PARKED_BROKER, dirs), 0);
  admin = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
  const p = await admin.post('/api/admin/pools', {
    name: 'isolated',
    provider: 'xvnc',
    template: {
      width: 800,
      height: 600,
      network: 'outbound',
      limits: { memoryMb: MEMORY_MB, pids: PIDS, cpuMax: 1 },
    },
    maxSize: 4,
    disconnectedTimeoutSec: 0,
  });
  expect(p.status, JSON.stringify(p.body)).toBe(201);
  poolId = p.body.id;
  const external = Object.values(os.networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal);
  expect(external, 'a non-loopback IPv4 address for the outbound control').toBeDefined();
  outsideAddress = external!.address;
  loopbackService = await listen('127.0.0.1');
  outsideService = await listen(outsideAddress);
  [A, B] = [await newDesk('alice'), await newDesk('bob')];
});

afterAll(async () => {
  try {
    viewers.closeAll();
    loopbackService?.close();
    outsideService?.close();
    if (ts) {
      await admin.del(`/api/admin/pools/${poolId}?force=true`);
      await ts.close();
    }
  } finally {
    expectNoXvncLeft(dirs);
  }
});

describe('two sandboxed desktops', () => {
  it('run as two different accounts, neither of them root or the server', () => {
    expect(A.h.isolation).toBe('sandbox');
    expect(B.h.isolation).toBe('sandbox');
    expect(A.h.account!.uid).not.toBe(B.h.account!.uid);
    for (const d of [A, B]) {
      expect(d.h.account!.uid).toBeGreaterThan(0);
      for (const pid of [d.h.xvncPid, d.h.sessionPid])
        expect(fs.readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(
          new RegExp(`^Uid:\\s+${d.h.account!.uid}\\s+${d.h.account!.uid}\\s`, 'm'),
        );
      expect(fs.statSync(d.h.home).uid).toBe(d.h.account!.uid);
      expect(fs.statSync(d.h.home).mode & 0o777).toBe(0o700);
      expect(fs.statSync(d.h.socket).uid).toBe(d.h.account!.uid);
    }
  });

  it("from inside A, nothing of B, of the server or of the host's loopback is reachable", async () => {
    // B's things: a secret file in its home and /tmp, and its clipboard
    plant(B, 'secret.txt', 'B-HOME-SECRET\n');
    await x(B, ['sh', '-c', 'echo B-TMP-SECRET > /tmp/b-secret && chmod 644 /tmp/b-secret']);
    await x(B, ['xclip', '-selection', 'clipboard', '-loops', '5'], 'B-CLIPBOARD-SECRET');
    await x(A, ['xclip', '-selection', 'clipboard', '-loops', '5'], 'A-OWN-CLIPBOARD');
    // the host's /tmp holds something too
    const hostTmp = path.join(os.tmpdir(), `vdi-iso-host-${process.pid}`);
    fs.writeFileSync(hostTmp, 'HOST-TMP-SECRET\n', { mode: 0o644 });
    const dbFile = path.join(dirs.dataDir, 'vdi.sqlite');
    expect(fs.existsSync(dbFile)).toBe(true);
    const serverPort = new URL(ts.url).port;
    const bRun = path.dirname(path.dirname(B.h.socket));

    // what each attempt runs, inside A, as A's session; OK = exit status 0
    const attempts: Record<string, string> = {
      // controls: A's own things work, so a DENIED below is the sandbox, not a broken probe
      'own-screen': 'test "$(xwd -root -silent | wc -c)" -gt 100000',
      'own-windows': 'xdotool search --class xterm',
      'own-clipboard': 'xclip -o -selection clipboard | grep -q A-OWN-CLIPBOARD',
      'own-home': 'echo mine > ~/own.txt && grep -q mine ~/own.txt',
      'outside-network': `timeout 5 bash -c 'exec 3<>/dev/tcp/${outsideAddress}/${portOf(outsideService)}; head -1 <&3' | grep -q hello`,
      // B's desktop
      'b-screen': `xwd -root -silent -display :${B.h.display} | head -c 1 | grep -q .`,
      'b-screen-abstract': `socat -u ABSTRACT-CONNECT:/tmp/.X11-unix/X${B.h.display} - </dev/null`,
      'b-windows': `DISPLAY=:${B.h.display} xdotool search --class xterm`,
      'b-clipboard': `xclip -o -selection clipboard -display :${B.h.display}`,
      'b-home': `cat ${B.h.home}/secret.txt || cat /home/${B.h.account!.name}/secret.txt`,
      'b-home-list': `ls ${path.dirname(B.h.home)} || ls /home/${B.h.account!.name}`,
      'b-tmp': 'cat /tmp/b-secret',
      'b-processes': `ps -eo uid= | grep -qw ${B.h.account!.uid}`,
      'b-signal': `kill -0 ${B.h.xvncPid} && kill -0 ${B.h.sessionPid}`,
      'b-rfb-socket': `socat -u UNIX-CONNECT:${B.h.socket} - </dev/null | head -c 12 | grep -q RFB`,
      'b-cookie': `cat ${bRun}/d/Xauthority`,
      // the host and the server
      'host-tmp': `cat ${hostTmp}`,
      'host-processes': `ps -eo comm= | grep -qx node`,
      'server-data': `cat ${dbFile} | head -c 1 | grep -q .`,
      'server-data-list': `ls ${path.join(dirs.dataDir, 'xvnc')}`,
      'server-run-dir': `ls ${dirs.runDir}`,
      'uid-locks': 'ls /run/vdi-uids',
      'host-loopback-service': `timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/${portOf(loopbackService)}'`,
      'host-loopback-via-gateway': `timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/${portOf(loopbackService)}'`,
      'server-port': `timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/${serverPort}'`,
      postgresql: "timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5432'",
      redis: "timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379'",
      shadow: 'cat /etc/shadow',
    };
    // a process that tries to outlive the session: checked after the log off (last test)
    const probe = [
      '#!/bin/bash',
      'out=$HOME/probe.out',
      ': > "$out.tmp"',
      ...Object.entries(attempts).map(
        ([name, cmd]) =>
          `if ( ${cmd} ) >/dev/null 2>&1; then echo "${name} OK" >> "$out.tmp"; else echo "${name} DENIED" >> "$out.tmp"; fi`,
      ),
      'setsid -f sleep 86399 </dev/null >/dev/null 2>&1',
      'mv "$out.tmp" "$out"',
      '',
    ].join('\n');
    plant(A, 'probe.sh', probe, 0o700);
    typeInto(A, 'bash ~/probe.sh\n');
    const out = await until(() => readHome(A, 'probe.out'), 60_000, 'the probe in A to finish');
    fs.rmSync(hostTmp, { force: true });
    const results = Object.fromEntries(
      out
        .trim()
        .split('\n')
        .map((l) => l.split(' ') as [string, string]),
    );
    const expected = Object.fromEntries(
      Object.keys(attempts).map((k) => [
        k,
        k.startsWith('own-') || k === 'outside-network' ? 'OK' : 'DENIED',
      ]),
    );
    expect(results).toEqual(expected);
  });

  it("no other local account can open a desktop's display or RFB socket either", async () => {
    for (const d of [A, B]) {
      const asNobody = (cmd: string) =>
        run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', cmd], {
          timeout: 10_000,
        }).then(
          () => 'OK',
          () => 'DENIED',
        );
      expect(
        await asNobody(`xwd -root -silent -display :${d.h.display} | head -c 1 | grep -q .`),
      ).toBe('DENIED');
      expect(await asNobody(`socat -u UNIX-CONNECT:${d.h.socket} - </dev/null | grep -q RFB`)).toBe(
        'DENIED',
      );
      expect(await asNobody(`cat ${d.h.home}/secret.txt ${d.h.home}/own.txt`)).toBe('DENIED');
    }
    // root (the gateway) can
    const banner = await run('socat', ['-u', `UNIX-CONNECT:${B.h.socket}`, '-'], {
      timeout: 5_000,
    }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
    expect(banner.stdout.startsWith('RFB ')).toBe(true);
  });

  it('kills a memory hog inside A only; A and B keep streaming', async () => {
    const oomBefore = Number(
      /oom_kill (\d+)/.exec(readCg(A, 'memory', 'memory.oom_control'))?.[1] ?? 0,
    );
    // tail keeps a whole "line" of an endless stream without newlines in memory
    typeInto(A, 'tail /dev/zero; echo "hog $?" > ~/hog.out\n');
    expect(await until(() => readHome(A, 'hog.out'), 60_000, 'the hog to be killed')).toBe(
      'hog 137\n', // 128 + SIGKILL
    );
    const oomAfter = Number(
      /oom_kill (\d+)/.exec(readCg(A, 'memory', 'memory.oom_control'))?.[1] ?? 0,
    );
    expect(oomAfter).toBeGreaterThan(oomBefore);
    // the desktop itself survived: same Xvnc, same session
    expect(alive(A.h.xvncPid)).toBe(true);
    expect(alive(A.h.sessionPid)).toBe(true);
    expect(Number(readCg(A, 'memory', 'memory.limit_in_bytes'))).toBe(MEMORY_MB * 1024 * 1024);
    await streams(A, async () => typeInto(A, 'echo still here\n'), 'A after the hog');
    await streams(B, () => x(B, ['xsetroot', '-solid', '#204060']), 'B after the hog');
  });

  it('caps a fork bomb in A at its process limit; the host and B are unaffected', async () => {
    typeInto(A, 'b(){ b|b& };b\n');
    // the bomb reaches the cap: the kernel refuses A's forks (pids.events counts refusals)
    await until(
      () => Number(/^max (\d+)/m.exec(readCg(A, 'pids', 'pids.events'))?.[1] ?? 0) > 0,
      30_000,
      'the fork bomb to hit the pids limit',
    );
    for (let i = 0; i < 5; i++) {
      expect(Number(readCg(A, 'pids', 'pids.current'))).toBeLessThanOrEqual(PIDS);
      expect(processesOf(A.h.account!.uid).length).toBeLessThanOrEqual(PIDS);
    }
    // the host forks fine and B still streams
    await run('true');
    await streams(B, () => x(B, ['xsetroot', '-solid', '#406020']), 'B during the bomb');
  });

  it("logs A off: every process of A's account is gone (the fork bomb and a setsid escapee too), B runs on", async () => {
    const uid = A.h.account!.uid;
    expect(processesOf(uid).length).toBeGreaterThan(0);
    const r = await A.user.api.post(`/api/sessions/${A.sessionId}/logoff`);
    expect(r.status).toBe(204);
    await until(() => processesOf(uid).length === 0, 30_000, `no process of uid ${uid}`);
    for (const dir of A.h.cgroup!.dirs) expect(fs.existsSync(dir), dir).toBe(false);
    expect(fs.existsSync(path.join('/run/vdi-uids', String(uid)))).toBe(false);
    expect(alive(B.h.xvncPid)).toBe(true);
    await streams(B, () => x(B, ['xsetroot', '-solid', '#604020']), 'B after A left');
  });
});
