import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { spawn, execFileSync } from 'node:child_process';
import type { Logger } from 'pino';
import { XvncTemplate, type NetworkMode, type XvncLimits } from '@vdi/shared';
import {
  type CreateSpec,
  type DesktopHandle,
  type DesktopHealth,
  type Provider,
  type ProviderDirs,
  type ProviderStatus,
  ProviderError,
} from './types.js';
import type { RfbEndpoint } from '../rfb/endpoint.js';
import { probeBanner } from '../rfb/probe.js';
import { prepareHome } from './xvnc-home.js';
import {
  checkProcess,
  processAlive,
  readProcStat,
  stopGroups,
  waitFor,
  waitGone,
} from './processes.js';
import { UidAllocator, type DesktopAccount, type UidRange } from './sandbox/accounts.js';
import { Cgroups, type CgroupRef } from './sandbox/cgroups.js';
import {
  buildLaunch,
  checkCgroupPaths,
  CLOSE_FDS,
  readSandboxInfo,
  SUPERVISOR_EXIT,
  type Isolation,
} from './sandbox/launch.js';
import {
  childrenOf,
  commOf,
  hostPidOf,
  pidNamespaceOf,
  readUntrustedSmallFile,
  uidOf,
} from './sandbox/proc.js';
import { writeXauthority } from './sandbox/xauth.js';
import { HomeDisks } from './sandbox/home-disk.js';

/** What the store keeps about a running Xvnc desktop; enough to re-adopt it. */
export interface XvncHandle {
  desktopId?: string;
  display: number;
  /** the RFB socket, as the host (the gateway) reaches it */
  socket: string;
  xvncPid: number;
  xvncStart: string | undefined;
  sessionPid: number;
  sessionStart: string | undefined;
  /** the desktop's home on the host */
  home: string;
  width: number;
  height: number;
  /** how the desktop is isolated; absent on handles from before isolation existed */
  isolation?: Isolation;
  /** DISPLAY and XAUTHORITY as the desktop's own programs see them */
  xEnv?: { DISPLAY: string; XAUTHORITY: string };
  account?: DesktopAccount;
  cgroup?: CgroupRef;
  network?: NetworkMode;
  limits?: XvncLimits;
  /** sandbox: host pid and start time of the root supervisor (bwrap's parent) */
  supervisorPid?: number;
  supervisorStart?: string | undefined;
  /** sandbox: host pid of the PID namespace's first process; killing it ends the desktop */
  initPid?: number;
  initStart?: string | undefined;
}

export interface XvncProviderOptions extends ProviderDirs {
  /**
   * How desktops are isolated when the server runs as root: `sandbox` (own account,
   * namespaces, cgroup) or `account` (own account and cgroup, the host's namespaces). A server
   * that is not root runs desktops as itself, isolated from nothing. @default 'sandbox'
   */
  isolation?: 'sandbox' | 'account';
  /** uids desktop accounts are taken from @default { base: 400000, count: 1000 } */
  uidRange?: UidRange;
  /** host-wide directory of uid locks (root-owned) @default '/run/vdi-uids' */
  uidLockDir?: string;
  /** cgroup parent of the desktops, relative to the server's own cgroup or absolute @default 'vdi' */
  cgroupParent?: string;
  xvncBinary?: string;
  /**
   * first X display number tried when desktops share the host's /tmp (`account` isolation or
   * not root) @default 20
   */
  firstDisplay?: number;
  /** how long Xvnc may take to accept connections, ms @default 15000 */
  startTimeoutMs?: number;
}

const X11_SOCKET_DIR = '/tmp/.X11-unix';
/**
 * Sandboxed desktops have their own /tmp and network namespace (and no abstract X socket), so
 * their display numbers cannot collide with anything: each is derived from the desktop's uid
 * (unique on the host), which keeps logs and the admin view unambiguous. The range starts high
 * so a root tool entering a `host`-network desktop never meets an ordinary X server's number.
 */
const SANDBOX_DISPLAY_BASE = 1000;
/** where a sandboxed desktop sees its runtime directory (sockets, XAUTHORITY) */
const runtimeInside = (uid: number) => `/run/user/${uid}`;
/**
 * The PATH of a desktop's programs, and so of its launch chain too: bwrap, setpriv and
 * slirp4netns are found on it, which is why status() looks for them here.
 */
const DESKTOP_PATH = '/usr/local/bin:/usr/bin:/bin';
/** how long Xvnc and the session get to exit after SIGTERM at destroy, ms */
const STOP_GRACE_MS = 3000;
/** the memory-hungry session, not Xvnc, should be what the OOM killer picks: see INIT */
const SESSION_OOM_SCORE_ADJ = 500;

export const DEFAULT_UID_RANGE: UidRange = { base: 400_000, count: 1000 };

/**
 * Runs as the desktop's account (inside the sandbox when there is one): starts the session
 * once Xvnc accepts X clients (it writes its display number to -displayfd then), and becomes
 * Xvnc, so the desktop lives exactly as long as its X server. "$@" is Xvnc's argv.
 */
const INIT = `${CLOSE_FDS}set -u
session=$VDI_SESSION
unset VDI_SESSION
rt=$XDG_RUNTIME_DIR
rm -f "$rt/xvnc.ready" "$rt/session.pid"
x=$$
(
  while [ ! -s "$rt/xvnc.ready" ]; do
    kill -0 $x 2>/dev/null || exit 0
    sleep 0.02
  done
  echo ${SESSION_OOM_SCORE_ADJ} >/proc/self/oom_score_adj 2>/dev/null
  exec /bin/sh -c 'echo $$ >"$XDG_RUNTIME_DIR/session.pid"; exec /bin/sh -c "$1"' vdi-session "$session"
) </dev/null >"$rt/session.log" 2>&1 &
exec "$@" -displayfd 3 3>"$rt/xvnc.ready"
`;

function asHandle(h: DesktopHandle): XvncHandle {
  const v = h as Partial<XvncHandle>;
  if (
    typeof v.display !== 'number' ||
    typeof v.socket !== 'string' ||
    typeof v.xvncPid !== 'number'
  ) {
    throw new ProviderError('BAD_HANDLE', 'not an Xvnc desktop record');
  }
  return v as XvncHandle;
}

/** the Xvnc log says the display was taken after our check (another server got there first) */
const DISPLAY_TAKEN =
  /Server is already active for display|server already active|Address already in use|Cannot establish any listening sockets/i;

/**
 * X11 desktops: one TigerVNC Xvnc per desktop, RFB only on a private unix socket (no TCP), X
 * only for clients holding the desktop's cookie, plus the pool's session command (window
 * manager and apps). As root, each desktop runs as its own account inside its own sandbox and
 * cgroup (see sandbox/launch.ts); started detached so it outlives a server restart.
 */
export class XvncProvider implements Provider {
  readonly kind = 'xvnc' as const;
  private readonly binary: string;
  private readonly reserved = new Set<number>();
  readonly isolation: Isolation;
  private readonly uids: UidAllocator | undefined;
  private readonly cgroups: Cgroups | undefined;
  /** why limits are not enforced, when they are not */
  readonly cgroupProblem: string | undefined;
  /** prefix of this server's cgroup names (run dirs are unique per server on a host) */
  private readonly tag: string;
  private readonly disks: HomeDisks;

  constructor(private readonly opts: XvncProviderOptions) {
    this.binary = opts.xvncBinary ?? 'Xvnc';
    const root = process.getuid?.() === 0;
    this.isolation = !root ? 'none' : (opts.isolation ?? 'sandbox');
    this.tag = createHash('sha256').update(path.resolve(opts.runDir)).digest('hex').slice(0, 8);
    if (this.isolation !== 'none') {
      this.uids = new UidAllocator(
        opts.uidRange ?? DEFAULT_UID_RANGE,
        path.resolve(opts.runDir),
        'xvnc',
        opts.uidLockDir,
      );
      const cg = Cgroups.detect({ parent: opts.cgroupParent ?? 'vdi' });
      if (typeof cg === 'string') this.cgroupProblem = cg;
      else this.cgroups = cg;
    } else {
      this.cgroupProblem = 'the server does not run as root';
    }
    this.disks = new HomeDisks();
  }

  async status(): Promise<ProviderStatus> {
    try {
      execFileSync(this.binary, ['-version'], { stdio: 'pipe', timeout: 5000 });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOENT') {
        return { ok: false, detail: 'Xvnc not found: install tigervnc-standalone-server' };
      }
      // Xvnc -version exits non-zero on some builds but still prints its version
    }
    const needed =
      this.isolation === 'sandbox'
        ? [
            ['bwrap', 'bubblewrap'],
            ['setpriv', 'util-linux'],
            ['slirp4netns', 'slirp4netns'],
          ]
        : this.isolation === 'account'
          ? [['setpriv', 'util-linux']]
          : [];
    const missing = needed.filter(([bin]) => !onPath(bin!)).map(([, pkg]) => pkg!);
    if (missing.length > 0)
      return {
        ok: false,
        detail: `desktop isolation needs these Debian packages: ${missing.join(' ')}`,
      };
    return { ok: true, detail: `Xvnc available; ${this.isolationSummary()}` };
  }

  /** one line for status and logs: how desktops are isolated here */
  isolationSummary(): string {
    const limits = this.cgroups
      ? `limits by ${this.cgroups.describe()}`
      : `no limits (${this.cgroupProblem})`;
    switch (this.isolation) {
      case 'sandbox':
        return `desktops sandboxed (own account, bubblewrap namespaces), ${limits}`;
      case 'account':
        return `desktops on their own accounts, host namespaces, ${limits}`;
      case 'none':
        return 'desktops NOT isolated: they run as the server account (the server is not root)';
    }
  }

  parseTemplate(template: unknown): Record<string, unknown> {
    return XvncTemplate.parse(template ?? {});
  }

  /** Free display numbers for desktops sharing the host's /tmp. */
  protected displayInUse(n: number, abstract: Set<number>): boolean {
    return (
      this.reserved.has(n) ||
      abstract.has(n) ||
      fs.existsSync(`/tmp/.X${n}-lock`) ||
      fs.existsSync(path.join(X11_SOCKET_DIR, `X${n}`))
    );
  }

  /** X servers listen on abstract sockets too, which survive a wiped /tmp/.X11-unix */
  private abstractDisplays(): Set<number> {
    const out = new Set<number>();
    try {
      for (const m of fs
        .readFileSync('/proc/net/unix', 'utf8')
        .matchAll(/@\/tmp\/\.X11-unix\/X(\d+)/g))
        out.add(Number(m[1]));
    } catch {
      /* not Linux */
    }
    return out;
  }

  private desktopDir(desktopId: string): string {
    return path.join(this.opts.dataDir, 'xvnc', desktopId);
  }

  async create(spec: CreateSpec, log: Logger): Promise<DesktopHandle> {
    const tpl = XvncTemplate.parse(spec.template);
    const isolation = this.isolation;
    // root-owned: what the server records about the desktop (its handle, bwrap's info, logs)
    const base = path.join(this.opts.runDir, `x-${spec.desktopId.slice(0, 12)}`);
    // the desktop account's own: its RFB socket, X socket directory, cookie
    const desk = isolation === 'none' ? base : path.join(base, 'd');
    const home = path.join(this.desktopDir(spec.desktopId), 'home');
    const sandboxed = isolation === 'sandbox';
    // Sandboxed desktops reach their files through bind mounts that root makes, so nothing of
    // the server's directories needs to be open to them; the others walk the host paths.
    const dirMode = sandboxed ? 0o700 : 0o711;
    fs.mkdirSync(this.opts.runDir, { recursive: true, mode: dirMode });
    fs.chmodSync(this.opts.runDir, dirMode);
    fs.rmSync(base, { recursive: true, force: true });
    fs.mkdirSync(base, { mode: isolation === 'account' ? 0o711 : 0o700 });
    if (desk !== base) fs.mkdirSync(desk, { mode: 0o700 });
    fs.mkdirSync(home, { recursive: true, mode: 0o700 });
    if (isolation !== 'none')
      for (const dir of [this.opts.dataDir, path.join(this.opts.dataDir, 'xvnc')])
        fs.chmodSync(dir, dirMode);

    let account: DesktopAccount | undefined;
    let cgroup: CgroupRef | undefined;
    const uidFile = path.join(this.desktopDir(spec.desktopId), 'uid');
    try {
      if (this.uids) {
        const previous = Number(readOr(uidFile, ''));
        account = this.uids.allocate(
          spec.desktopId,
          Number.isInteger(previous) && previous > 0 ? previous : undefined,
        );
        fs.writeFileSync(uidFile, String(account.uid));
      }
      if (tpl.limits.diskMb > 0 && account) {
        await this.disks.mount(
          path.join(this.desktopDir(spec.desktopId), 'home.img'),
          home,
          tpl.limits.diskMb,
          log,
        );
      }
      if (account && fs.statSync(home).uid !== account.uid) {
        // a new home, or a dedicated desktop's kept one from a run under another uid
        execFileSync('chown', ['-R', '--no-dereference', `${account.uid}:${account.gid}`, home]);
      }
      prepareHome(home, account);
      if (account) {
        fs.chmodSync(home, 0o700);
        fs.chownSync(desk, account.uid, account.gid);
      }
      if (this.cgroups && account) {
        cgroup = this.cgroups.create(`${this.tag}.x.${spec.desktopId}`, tpl.limits);
        checkCgroupPaths(this.cgroups.procsFiles(cgroup));
      }
      const handle = sandboxed
        ? await this.startSandboxed(spec, tpl, { base, desk, home, account: account!, cgroup }, log)
        : await this.startShared(spec, tpl, { base, desk, home, account, cgroup }, log);
      // lets sweep() find everything if we die before the handle reaches the store
      fs.writeFileSync(path.join(base, 'handle.json'), JSON.stringify(handle), { mode: 0o600 });
      log.info(
        {
          desktopId: spec.desktopId,
          display: handle.display,
          pid: handle.xvncPid,
          isolation,
          uid: account?.uid,
          network: handle.network,
        },
        'Xvnc desktop started',
      );
      return handle as unknown as DesktopHandle;
    } catch (err) {
      if (cgroup && this.cgroups) await this.cgroups.remove(cgroup).catch(() => undefined);
      await this.disks.unmount(home).catch(() => undefined);
      if (account) this.uids?.release(account.uid, spec.desktopId);
      fs.rmSync(base, { recursive: true, force: true });
      throw err;
    }
  }

  /** The environment of the desktop's programs. */
  private sessionEnv(o: {
    display: number;
    home: string;
    runtime: string;
    user: string;
    session: string;
  }): Record<string, string> {
    return {
      DISPLAY: `:${o.display}`,
      XAUTHORITY: path.join(o.runtime, 'Xauthority'),
      HOME: o.home,
      USER: o.user,
      LOGNAME: o.user,
      SHELL: '/bin/bash',
      PATH: DESKTOP_PATH,
      LANG: 'C.UTF-8',
      TERM: 'xterm',
      XDG_RUNTIME_DIR: o.runtime,
      VDI_SESSION: o.session,
    };
  }

  private xvncArgs(
    display: number,
    tpl: XvncTemplate,
    spec: CreateSpec,
    runtime: string,
  ): string[] {
    return [
      this.binary,
      `:${display}`,
      '-geometry',
      `${tpl.width}x${tpl.height}`,
      '-depth',
      '24',
      '-rfbunixpath',
      path.join(runtime, 'rfb.sock'),
      '-rfbunixmode',
      '0600',
      // no TCP listener at all: the gateway is the only client, over the unix socket
      '-rfbport',
      '-1',
      // X clients: only through the socket in /tmp/.X11-unix (no TCP, no abstract socket,
      // which in a shared network namespace any local process could reach), with the cookie
      '-nolisten',
      'tcp',
      '-nolisten',
      'local',
      '-auth',
      path.join(runtime, 'Xauthority'),
      '-SecurityTypes',
      'None',
      // health checks read the banner and hang up; TigerVNC would count those as failed logins
      '-UseBlacklist=0',
      '-AlwaysShared',
      '-AcceptSetDesktopSize',
      '-desktop',
      `desktop-${spec.desktopId.slice(0, 8)}`,
    ];
  }

  private async startSandboxed(
    spec: CreateSpec,
    tpl: XvncTemplate,
    d: {
      base: string;
      desk: string;
      home: string;
      account: DesktopAccount;
      cgroup: CgroupRef | undefined;
    },
    log: Logger,
  ): Promise<XvncHandle> {
    const { account } = d;
    const display =
      SANDBOX_DISPLAY_BASE + (account.uid - (this.opts.uidRange ?? DEFAULT_UID_RANGE).base);
    const x11 = path.join(d.desk, 'x11');
    fs.mkdirSync(x11, { mode: 0o700 });
    fs.chownSync(x11, account.uid, account.gid);
    const runtime = runtimeInside(account.uid);
    const homeInside = `/home/${account.name}`;
    writeXauthority(path.join(d.desk, 'Xauthority'), account);
    const env = this.sessionEnv({
      display,
      home: homeInside,
      runtime,
      user: account.name,
      session: tpl.sessionCommand,
    });
    const launch = buildLaunch({
      isolation: 'sandbox',
      account,
      cgroupProcs: d.cgroup && this.cgroups ? this.cgroups.procsFiles(d.cgroup) : [],
      metaDir: d.base,
      network: tpl.network,
      home: { host: d.home, inside: homeInside },
      runtime: { host: d.desk, inside: runtime },
      binds: [{ host: x11, inside: X11_SOCKET_DIR }],
      hide: [path.resolve(this.opts.dataDir), path.resolve(this.opts.runDir)],
      hostname: `desktop-${spec.desktopId.slice(0, 8)}`,
      env,
      command: ['/bin/bash', '-c', INIT, 'vdi-init', ...this.xvncArgs(display, tpl, spec, runtime)],
    });
    const logFile = path.join(d.base, 'desktop.log');
    const supervisor = spawnDetached(launch.argv, launch.env, logFile);
    const socket = path.join(d.desk, 'rfb.sock');
    try {
      const ready = await waitFor(
        async () => {
          if (!(await processAlive({ pid: supervisor.pid })) || supervisor.exited())
            throw new Error(`the sandbox exited${exitReason(supervisor.code())}`);
          const info = readSandboxInfo(d.base);
          if (!info) return undefined;
          const xvnc = childrenOf(info.childPid).find((p) => commOf(p) === 'Xvnc');
          if (xvnc === undefined || !fs.existsSync(socket)) return undefined;
          if (!(await probeBanner({ kind: 'unix', path: socket }, 1000)).ok) return undefined;
          const nsSession = Number(
            readUntrustedSmallFile(path.join(d.desk, 'session.pid'))?.trim(),
          );
          if (!Number.isInteger(nsSession) || nsSession <= 0) return undefined;
          const session = hostPidOf(info.pidNamespace, nsSession);
          if (session === undefined) return undefined;
          return { info, xvnc, session };
        },
        this.opts.startTimeoutMs ?? 15000,
        'the sandboxed Xvnc to accept connections',
      );
      return {
        desktopId: spec.desktopId,
        display,
        socket,
        xvncPid: ready.xvnc,
        xvncStart: (await readProcStat(ready.xvnc))?.startTime,
        sessionPid: ready.session,
        sessionStart: (await readProcStat(ready.session))?.startTime,
        home: d.home,
        width: tpl.width,
        height: tpl.height,
        isolation: 'sandbox',
        xEnv: { DISPLAY: env.DISPLAY!, XAUTHORITY: env.XAUTHORITY! },
        account,
        ...(d.cgroup ? { cgroup: d.cgroup } : {}),
        network: tpl.network,
        limits: tpl.limits,
        supervisorPid: supervisor.pid,
        supervisorStart: (await readProcStat(supervisor.pid))?.startTime,
        initPid: ready.info.childPid,
        initStart: (await readProcStat(ready.info.childPid))?.startTime,
      };
    } catch (e) {
      await this.killDesktop(
        { supervisorPid: supervisor.pid, cgroup: d.cgroup },
        readSandboxInfo(d.base)?.childPid,
      );
      const tail = readTail(logFile) + readTail(path.join(d.base, 'slirp.log'));
      log.error({ desktopId: spec.desktopId, err: e, tail }, 'sandboxed Xvnc did not start');
      throw new ProviderError(
        'XVNC_START_FAILED',
        `Xvnc did not start in its sandbox: ${(e as Error).message}\n${tail}`,
      );
    }
  }

  /** Desktops in the host's namespaces: they share /tmp/.X11-unix, so displays are allocated. */
  private async startShared(
    spec: CreateSpec,
    tpl: XvncTemplate,
    d: {
      base: string;
      desk: string;
      home: string;
      account: DesktopAccount | undefined;
      cgroup: CgroupRef | undefined;
    },
    log: Logger,
  ): Promise<XvncHandle> {
    const first = this.opts.firstDisplay ?? 20;
    if (!fs.existsSync(X11_SOCKET_DIR)) {
      fs.mkdirSync(X11_SOCKET_DIR, { mode: 0o1777 });
      fs.chmodSync(X11_SOCKET_DIR, 0o1777);
    }
    writeXauthority(path.join(d.desk, 'Xauthority'), d.account);
    const logFile = path.join(d.base, 'desktop.log');
    const socket = path.join(d.desk, 'rfb.sock');
    // displays Xvnc found taken although no lock file said so when we looked
    const taken = new Set<number>();
    for (let attempt = 0; attempt < 20; attempt++) {
      let display = first;
      const abstract = this.abstractDisplays();
      while (taken.has(display) || this.displayInUse(display, abstract)) display++;
      taken.add(display);
      this.reserved.add(display);
      try {
        const env = this.sessionEnv({
          display,
          home: d.home,
          runtime: d.desk,
          user: d.account?.name ?? serverAccountName(),
          session: tpl.sessionCommand,
        });
        const launch = buildLaunch({
          isolation: d.account ? 'account' : 'none',
          account: d.account,
          cgroupProcs: d.cgroup && this.cgroups ? this.cgroups.procsFiles(d.cgroup) : [],
          metaDir: d.base,
          network: 'host',
          env,
          command: [
            '/bin/bash',
            '-c',
            INIT,
            'vdi-init',
            ...this.xvncArgs(display, tpl, spec, d.desk),
          ],
        });
        fs.writeFileSync(logFile, '');
        // the shell execs down to Xvnc (after setpriv): this pid is Xvnc's
        const xvnc = spawnDetached(launch.argv, launch.env, logFile);
        try {
          const session = await waitFor(
            async () => {
              if (xvnc.exited() || !(await processAlive({ pid: xvnc.pid })))
                throw new Error(`Xvnc exited${exitReason(xvnc.code())}`);
              if (!fs.existsSync(socket)) return undefined;
              if (!(await probeBanner({ kind: 'unix', path: socket }, 1000)).ok) return undefined;
              const pid = Number(readUntrustedSmallFile(path.join(d.desk, 'session.pid'))?.trim());
              return Number.isInteger(pid) && pid > 0 ? pid : undefined;
            },
            this.opts.startTimeoutMs ?? 15000,
            'Xvnc to accept connections',
          );
          return {
            desktopId: spec.desktopId,
            display,
            socket,
            xvncPid: xvnc.pid,
            xvncStart: (await readProcStat(xvnc.pid))?.startTime,
            sessionPid: session,
            sessionStart: (await readProcStat(session))?.startTime,
            home: d.home,
            width: tpl.width,
            height: tpl.height,
            isolation: d.account ? 'account' : 'none',
            xEnv: { DISPLAY: env.DISPLAY!, XAUTHORITY: env.XAUTHORITY! },
            ...(d.account ? { account: d.account } : {}),
            ...(d.cgroup ? { cgroup: d.cgroup, limits: tpl.limits } : {}),
            network: 'host',
          };
        } catch (e) {
          if (d.cgroup && this.cgroups) await this.cgroups.kill(d.cgroup);
          else await stopGroups([{ pid: xvnc.pid }], 1000);
          const tail = readTail(logFile);
          if (DISPLAY_TAKEN.test(tail)) {
            log.warn({ display }, 'X display taken, trying the next one');
            continue;
          }
          throw new ProviderError(
            'XVNC_START_FAILED',
            `Xvnc did not start: ${(e as Error).message}\n${tail}`,
          );
        }
      } finally {
        this.reserved.delete(display);
      }
    }
    throw new ProviderError('NO_DISPLAY', 'no free X display number found');
  }

  endpoint(handle: DesktopHandle): RfbEndpoint {
    const h = asHandle(handle);
    const serverUid = h.account?.uid ?? (h.isolation === 'none' ? process.getuid?.() : undefined);
    return {
      kind: 'unix',
      path: h.socket,
      ...(serverUid !== undefined ? { serverUid } : {}),
    };
  }

  async health(handle: DesktopHandle): Promise<DesktopHealth> {
    const h = asHandle(handle);
    const xvnc = await checkProcess({ pid: h.xvncPid, startTime: h.xvncStart });
    if (!xvnc.alive) return { state: 'dead', reason: 'Xvnc process is gone' };
    if (xvnc.stat.state === 'T') return { state: 'unresponsive', reason: 'Xvnc is stopped' };
    // cheap: the desktop's X server must still be its own account's (not a recycled pid)
    if (h.account && uidOf(h.xvncPid) !== h.account.uid)
      return { state: 'dead', reason: `Xvnc no longer runs as uid ${h.account.uid}` };
    const probe = await probeBanner({ kind: 'unix', path: h.socket }, 2000);
    if (probe.ok) return { state: 'running' };
    if (probe.kind === 'timeout') return { state: 'unresponsive', reason: 'RFB socket silent' };
    if (probe.kind === 'not-rfb' && probe.received > 0)
      return { state: 'unresponsive', reason: 'RFB socket garbage' };
    // missing, refusing, or hanging up without a byte: no Xvnc behind the socket
    return { state: 'dead', reason: 'RFB socket refuses connections' };
  }

  /**
   * Ends every process of the desktop. With a cgroup: SIGTERM to all (Xvnc and the session
   * get a moment to exit cleanly), then the whole cgroup is killed, whatever forked or called
   * setsid. A sandbox without a cgroup ends with its PID namespace's first process.
   */
  private async killDesktop(
    h: Pick<XvncHandle, 'cgroup' | 'supervisorPid' | 'supervisorStart'> &
      Partial<
        Pick<
          XvncHandle,
          'xvncPid' | 'xvncStart' | 'sessionPid' | 'sessionStart' | 'initPid' | 'initStart'
        >
      >,
    initPid?: number,
  ): Promise<void> {
    const main = [
      ...(h.xvncPid !== undefined ? [{ pid: h.xvncPid, startTime: h.xvncStart }] : []),
      ...(h.sessionPid !== undefined ? [{ pid: h.sessionPid, startTime: h.sessionStart }] : []),
    ];
    if (h.cgroup && this.cgroups) {
      this.cgroups.signalAll(h.cgroup, 'SIGTERM');
      if (main.length > 0) await waitGone(main, STOP_GRACE_MS);
      await this.cgroups.remove(h.cgroup);
      return;
    }
    const init = h.initPid ?? initPid;
    if (init !== undefined) {
      const ref = { pid: init, startTime: h.initStart };
      if (await processAlive(ref)) process.kill(init, 'SIGKILL');
      await waitGone([ref], STOP_GRACE_MS);
    }
    const rest = [...main];
    if (h.supervisorPid !== undefined)
      rest.push({ pid: h.supervisorPid, startTime: h.supervisorStart });
    await stopGroups(rest);
  }

  async destroy(handle: DesktopHandle, log: Logger, opts?: { keepDisk?: boolean }): Promise<void> {
    const h = asHandle(handle);
    if (h.isolation === undefined || h.isolation === 'none') {
      await stopGroups([
        { pid: h.sessionPid, startTime: h.sessionStart },
        { pid: h.xvncPid, startTime: h.xvncStart },
      ]);
    } else {
      await this.killDesktop(h);
    }
    const base =
      h.isolation === 'none' || h.isolation === undefined
        ? path.dirname(h.socket)
        : path.dirname(path.dirname(h.socket));
    fs.rmSync(base, { recursive: true, force: true });
    // Xvnc removes these on a clean exit; after SIGKILL they stay and would block the display
    if (
      h.isolation !== 'sandbox' &&
      !(await processAlive({ pid: h.xvncPid, startTime: h.xvncStart }))
    ) {
      fs.rmSync(`/tmp/.X${h.display}-lock`, { force: true });
      fs.rmSync(path.join(X11_SOCKET_DIR, `X${h.display}`), { force: true });
    }
    await this.disks.unmount(h.home);
    if (h.account && h.desktopId) this.uids?.release(h.account.uid, h.desktopId);
    if (!opts?.keepDisk) fs.rmSync(path.dirname(h.home), { recursive: true, force: true });
    log.info({ display: h.display, pid: h.xvncPid, uid: h.account?.uid }, 'Xvnc desktop stopped');
  }

  async purge(desktopId: string): Promise<void> {
    const dir = this.desktopDir(desktopId);
    await this.disks.unmount(path.join(dir, 'home'));
    fs.rmSync(dir, { recursive: true, force: true });
  }

  async sweep(known: DesktopHandle[], log: Logger): Promise<number> {
    const handles = known.map(asHandle);
    const keep = new Set(handles.map((h) => path.resolve(h.socket)));
    let removed = 0;
    let entries: string[] = [];
    try {
      entries = fs.readdirSync(this.opts.runDir).filter((e) => e.startsWith('x-'));
    } catch {
      /* no run dir yet */
    }
    for (const e of entries) {
      const dir = path.join(this.opts.runDir, e);
      const sockets = [path.join(dir, 'rfb.sock'), path.join(dir, 'd', 'rfb.sock')];
      if (sockets.some((s) => keep.has(s))) continue;
      let recorded: XvncHandle | undefined;
      try {
        recorded = asHandle(JSON.parse(fs.readFileSync(path.join(dir, 'handle.json'), 'utf8')));
      } catch {
        /* started but never finished starting, or from an older version */
      }
      if (recorded) {
        await this.destroy(recorded as unknown as DesktopHandle, log, { keepDisk: true });
      } else {
        // died while starting: bwrap may have reported its sandbox, whose first process
        // takes every other one with it (the cgroup sweep below catches the rest)
        const info = readSandboxInfo(dir);
        if (info && pidNamespaceOf(info.childPid) === info.pidNamespace)
          process.kill(info.childPid, 'SIGKILL');
        await this.sweepLegacy(dir);
      }
      fs.rmSync(dir, { recursive: true, force: true });
      log.warn({ dir }, 'removed an Xvnc desktop no record accounts for');
      removed++;
    }
    // cgroups of desktops that died half-made (their run dir went first)
    if (this.cgroups) {
      const knownCgroups = new Set(handles.flatMap((h) => h.cgroup?.dirs ?? []));
      for (const ref of this.cgroups.list(`${this.tag}.x.`)) {
        if (ref.dirs.some((d) => knownCgroups.has(d))) continue;
        await this.cgroups.remove(ref);
        log.warn({ cgroup: ref.dirs[0] }, 'removed a desktop cgroup no record accounts for');
      }
    }
    if (this.uids) {
      const ids = new Set(handles.map((h) => h.desktopId).filter((x): x is string => !!x));
      const released = this.uids.reclaim(ids);
      if (released.length > 0)
        log.warn({ uids: released }, 'released desktop accounts no record holds');
    }
    return removed;
  }

  /** a run dir from before handles were recorded there: its pid file */
  private async sweepLegacy(dir: string): Promise<void> {
    let pids: number[] = [];
    try {
      pids = fs
        .readFileSync(path.join(dir, 'pids'), 'utf8')
        .trim()
        .split(/\s+/)
        .map(Number)
        .filter((n) => n > 1);
    } catch {
      /* no pid file: nothing was started */
    }
    // only signal processes that still use this desktop's directory (pids may be reused)
    const ours = pids.filter((pid) => {
      try {
        return (
          fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir) ||
          fs.readFileSync(`/proc/${pid}/environ`, 'utf8').includes(dir)
        );
      } catch {
        return false;
      }
    });
    await stopGroups(ours.map((pid) => ({ pid })));
  }

  describe(handle: DesktopHandle): Record<string, string> {
    const h = asHandle(handle);
    return {
      display: `:${h.display}`,
      pid: String(h.xvncPid),
      size: `${h.width}x${h.height}`,
      isolation: h.isolation ?? 'none',
      ...(h.account ? { account: `${h.account.name} (uid ${h.account.uid})` } : {}),
      ...(h.network ? { network: h.network } : {}),
    };
  }

  /** the cgroup module in use (for the admin view's usage figures); undefined when none */
  cgroupsInUse(): Cgroups | undefined {
    return this.cgroups;
  }
}

function onPath(bin: string): boolean {
  return DESKTOP_PATH.split(':').some((d) => fs.existsSync(path.join(d, bin)));
}

/** The account the server runs as: a desktop that is not isolated runs as it, too. */
function serverAccountName(): string {
  try {
    return os.userInfo().username;
  } catch {
    return 'user'; // a uid with no passwd entry
  }
}

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return fallback;
  }
}

function readTail(file: string, bytes = 2000): string {
  try {
    return fs.readFileSync(file, 'utf8').slice(-bytes);
  } catch {
    return '';
  }
}

function exitReason(code: number | null | undefined): string {
  if (code === null || code === undefined) return '';
  return ` (exit ${code}${SUPERVISOR_EXIT[code] ? `: ${SUPERVISOR_EXIT[code]}` : ''})`;
}

interface Spawned {
  pid: number;
  exited(): boolean;
  code(): number | null | undefined;
}

/** Starts a desktop's first process in its own session and process group, output to `logFile`. */
function spawnDetached(argv: string[], env: Record<string, string>, logFile: string): Spawned {
  const out = fs.openSync(logFile, 'a', 0o600);
  const [cmd, ...args] = argv;
  const child = spawn(cmd!, args, { detached: true, stdio: ['ignore', out, out], env });
  fs.closeSync(out);
  if (child.pid === undefined) throw new ProviderError('SPAWN_FAILED', `could not start ${cmd}`);
  let exited = false;
  let code: number | null | undefined;
  child.once('exit', (c) => {
    exited = true;
    code = c;
  });
  child.once('error', () => (exited = true));
  child.unref();
  return { pid: child.pid, exited: () => exited, code: () => code };
}
