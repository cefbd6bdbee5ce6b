import fs from 'node:fs';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import type { Logger } from 'pino';
import { XvncTemplate } from '@vdi/shared';
import {
  type CreateSpec,
  type DesktopHandle,
  type DesktopHealth,
  type Provider,
  type ProviderDirs,
  type ProviderStatus,
  type RfbEndpoint,
  ProviderError,
} from './types.js';
import { prepareHome } from './xvnc-home.js';
import {
  checkProcess,
  probeRfb,
  processAlive,
  readProcStat,
  stopGroups,
  waitFor,
} from './process-util.js';

/** What the store keeps about a running Xvnc desktop; enough to re-adopt it. */
export interface XvncHandle {
  display: number;
  socket: string;
  xvncPid: number;
  xvncStart: string | undefined;
  sessionPid: number;
  sessionStart: string | undefined;
  home: string;
  width: number;
  height: number;
}

export interface XvncProviderOptions extends ProviderDirs {
  /** account desktops run as when this process is root */
  desktopUser: string;
  xvncBinary?: string;
  /** first X display number tried @default 20 */
  firstDisplay?: number;
  /** how long Xvnc may take to accept connections, ms @default 15000 */
  startTimeoutMs?: number;
}

const X11_SOCKET_DIR = '/tmp/.X11-unix';

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

/**
 * X11 desktops: one TigerVNC Xvnc per desktop on its own display, RFB only on a private unix
 * socket (no TCP), started detached in its own process group as an unprivileged account when
 * we are root, plus the pool's session command (window manager and apps) in another group.
 */
export class XvncProvider implements Provider {
  readonly kind = 'xvnc' as const;
  private readonly binary: string;
  private readonly reserved = new Set<number>();
  private account: { uid: number; gid: number; name: string } | undefined;

  constructor(private readonly opts: XvncProviderOptions) {
    this.binary = opts.xvncBinary ?? 'Xvnc';
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
    return { ok: true, detail: 'Xvnc available' };
  }

  parseTemplate(template: unknown): Record<string, unknown> {
    return XvncTemplate.parse(template ?? {});
  }

  /** Root runs desktops as the unprivileged account (created on first use). */
  private desktopAccount(log: Logger): { uid: number; gid: number; name: string } | undefined {
    if (process.getuid?.() !== 0) return undefined;
    if (this.account) return this.account;
    const name = this.opts.desktopUser;
    const lookup = () => {
      try {
        const uid = Number(
          execFileSync('id', ['-u', name], { encoding: 'utf8', stdio: 'pipe' }).trim(),
        );
        const gid = Number(
          execFileSync('id', ['-g', name], { encoding: 'utf8', stdio: 'pipe' }).trim(),
        );
        return { uid, gid, name };
      } catch {
        return undefined;
      }
    };
    let acct = lookup();
    if (!acct) {
      log.info({ user: name }, 'creating the unprivileged desktop account');
      execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/bin/bash', name], {
        stdio: 'pipe',
      });
      acct = lookup();
      if (!acct)
        throw new ProviderError('NO_DESKTOP_USER', `could not create the desktop account ${name}`);
    }
    this.account = acct;
    return acct;
  }

  private displayInUse(n: number, abstract: Set<number>): boolean {
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

  async create(spec: CreateSpec, log: Logger): Promise<DesktopHandle> {
    const tpl = XvncTemplate.parse(spec.template);
    const acct = this.desktopAccount(log);
    const first = this.opts.firstDisplay ?? 20;
    const base = path.join(this.opts.runDir, `x-${spec.desktopId.slice(0, 12)}`);
    const home = path.join(this.opts.dataDir, 'xvnc', spec.desktopId, 'home');
    fs.mkdirSync(this.opts.runDir, { recursive: true, mode: 0o711 });
    fs.chmodSync(this.opts.runDir, 0o711);
    fs.rmSync(base, { recursive: true, force: true });
    fs.mkdirSync(base, { mode: 0o700 });
    fs.mkdirSync(home, { recursive: true, mode: 0o700 });
    if (!fs.existsSync(X11_SOCKET_DIR)) {
      fs.mkdirSync(X11_SOCKET_DIR, { mode: 0o1777 });
      fs.chmodSync(X11_SOCKET_DIR, 0o1777);
    }
    prepareHome(home, acct);
    if (acct) {
      // the desktop account must be able to reach its home below our data dir
      for (const dir of [this.opts.dataDir, path.join(this.opts.dataDir, 'xvnc')])
        fs.chmodSync(dir, 0o711);
      fs.chownSync(base, acct.uid, acct.gid);
      execFileSync('chown', ['-R', `${acct.uid}:${acct.gid}`, path.dirname(home)]);
    }
    const socket = path.join(base, 'rfb.sock');
    const logFile = path.join(base, 'xvnc.log');

    // displays Xvnc found taken although no lock file said so (e.g. an abstract socket)
    const taken = new Set<number>();
    for (let attempt = 0; attempt < 20; attempt++) {
      let display = first;
      const abstract = this.abstractDisplays();
      while (taken.has(display) || this.displayInUse(display, abstract)) display++;
      taken.add(display);
      this.reserved.add(display);
      try {
        const started = await this.startXvnc(display, socket, logFile, tpl, spec, acct, log);
        if (!started) continue; // display was taken between our check and Xvnc's start
        const session = this.startSession(display, home, tpl.sessionCommand, base, acct);
        const handle: XvncHandle = {
          display,
          socket,
          xvncPid: started.pid,
          xvncStart: (await readProcStat(started.pid))?.startTime,
          sessionPid: session,
          sessionStart: (await readProcStat(session))?.startTime,
          home,
          width: tpl.width,
          height: tpl.height,
        };
        // lets sweep() find these processes if we die before the handle reaches the store
        fs.writeFileSync(path.join(base, 'pids'), `${started.pid} ${session}\n`);
        log.info({ desktopId: spec.desktopId, display, pid: started.pid }, 'Xvnc desktop started');
        return handle as unknown as DesktopHandle;
      } finally {
        this.reserved.delete(display);
      }
    }
    throw new ProviderError('NO_DISPLAY', 'no free X display number found');
  }

  private async startXvnc(
    display: number,
    socket: string,
    logFile: string,
    tpl: XvncTemplate,
    spec: CreateSpec,
    acct: { uid: number; gid: number } | undefined,
    log: Logger,
  ): Promise<{ pid: number } | undefined> {
    const out = fs.openSync(logFile, 'a');
    const args = [
      `:${display}`,
      '-geometry',
      `${tpl.width}x${tpl.height}`,
      '-depth',
      '24',
      '-rfbunixpath',
      socket,
      '-rfbunixmode',
      '0600',
      // no TCP listener at all: the gateway is the only client, over the unix socket
      '-rfbport',
      '-1',
      '-nolisten',
      'tcp',
      '-SecurityTypes',
      'None',
      // health checks read the banner and hang up; TigerVNC would count those as failed logins
      '-UseBlacklist=0',
      '-AlwaysShared',
      '-AcceptSetDesktopSize',
      '-desktop',
      `desktop-${spec.desktopId.slice(0, 8)}`,
    ];
    const child = spawn(this.binary, args, {
      detached: true,
      stdio: ['ignore', out, out],
      ...(acct ? { uid: acct.uid, gid: acct.gid } : {}),
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: path.dirname(socket) },
    });
    fs.closeSync(out);
    const pid = child.pid;
    if (pid === undefined)
      throw new ProviderError('SPAWN_FAILED', `could not start ${this.binary}`);
    let exited = false;
    child.once('exit', () => (exited = true));
    child.unref();
    try {
      await waitFor(
        async () => {
          if (exited || !(await processAlive({ pid }))) throw new Error('Xvnc exited');
          if (!fs.existsSync(socket)) return undefined;
          return (await probeRfb({ kind: 'unix', path: socket }, 1000)).ok ? true : undefined;
        },
        this.opts.startTimeoutMs ?? 15000,
        'Xvnc to accept connections',
      );
      return { pid };
    } catch (e) {
      await stopGroups([{ pid }], 1000);
      const tail = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-2000) : '';
      if (
        /server already active|Address already in use|Cannot establish any listening sockets/i.test(
          tail,
        )
      ) {
        log.warn({ display }, 'X display taken, trying the next one');
        fs.writeFileSync(logFile, '');
        return undefined;
      }
      throw new ProviderError(
        'XVNC_START_FAILED',
        `Xvnc did not start: ${(e as Error).message}\n${tail}`,
      );
    }
  }

  private startSession(
    display: number,
    home: string,
    command: string,
    base: string,
    acct: { uid: number; gid: number; name: string } | undefined,
  ): number {
    const out = fs.openSync(path.join(base, 'session.log'), 'a');
    const child = spawn('/bin/sh', ['-c', command], {
      detached: true,
      cwd: home,
      stdio: ['ignore', out, out],
      ...(acct ? { uid: acct.uid, gid: acct.gid } : {}),
      env: {
        DISPLAY: `:${display}`,
        HOME: home,
        USER: acct?.name ?? process.env.USER ?? 'user',
        LOGNAME: acct?.name ?? process.env.USER ?? 'user',
        SHELL: '/bin/bash',
        PATH: '/usr/local/bin:/usr/bin:/bin',
        LANG: 'C.UTF-8',
        TERM: 'xterm',
        XDG_RUNTIME_DIR: base,
      },
    });
    fs.closeSync(out);
    if (child.pid === undefined)
      throw new ProviderError('SPAWN_FAILED', 'could not start the session command');
    child.unref();
    return child.pid;
  }

  endpoint(handle: DesktopHandle): RfbEndpoint {
    return { kind: 'unix', path: asHandle(handle).socket };
  }

  async health(handle: DesktopHandle): Promise<DesktopHealth> {
    const h = asHandle(handle);
    const xvnc = await checkProcess({ pid: h.xvncPid, startTime: h.xvncStart });
    if (!xvnc.alive) return { state: 'dead', reason: 'Xvnc process is gone' };
    if (xvnc.stat.state === 'T') return { state: 'unresponsive', reason: 'Xvnc is stopped' };
    const probe = await probeRfb({ kind: 'unix', path: h.socket }, 2000);
    if (probe.ok) return { state: 'running' };
    if (probe.kind === 'timeout') return { state: 'unresponsive', reason: 'RFB socket silent' };
    if (probe.kind === 'not-rfb' && probe.received > 0)
      return { state: 'unresponsive', reason: 'RFB socket garbage' };
    // missing, refusing, or hanging up without a byte: no Xvnc behind the socket
    return { state: 'dead', reason: 'RFB socket refuses connections' };
  }

  async destroy(handle: DesktopHandle, log: Logger, opts?: { keepDisk?: boolean }): Promise<void> {
    const h = asHandle(handle);
    await stopGroups([
      { pid: h.sessionPid, startTime: h.sessionStart },
      { pid: h.xvncPid, startTime: h.xvncStart },
    ]);
    fs.rmSync(path.dirname(h.socket), { recursive: true, force: true });
    // Xvnc removes these on a clean exit; after SIGKILL they stay and would block the display
    if (!(await processAlive({ pid: h.xvncPid, startTime: h.xvncStart }))) {
      fs.rmSync(`/tmp/.X${h.display}-lock`, { force: true });
      fs.rmSync(path.join(X11_SOCKET_DIR, `X${h.display}`), { force: true });
    }
    if (!opts?.keepDisk) fs.rmSync(path.dirname(h.home), { recursive: true, force: true });
    log.info({ display: h.display, pid: h.xvncPid }, 'Xvnc desktop stopped');
  }

  async purge(desktopId: string): Promise<void> {
    fs.rmSync(path.join(this.opts.dataDir, 'xvnc', desktopId), { recursive: true, force: true });
  }

  async sweep(known: DesktopHandle[], log: Logger): Promise<number> {
    const keep = new Set(known.map((h) => path.dirname(asHandle(h).socket)));
    let removed = 0;
    let entries: string[];
    try {
      entries = fs.readdirSync(this.opts.runDir).filter((e) => e.startsWith('x-'));
    } catch {
      return 0;
    }
    for (const e of entries) {
      const dir = path.join(this.opts.runDir, e);
      if (keep.has(dir)) continue;
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
      fs.rmSync(dir, { recursive: true, force: true });
      log.warn({ dir, pids: ours }, 'removed an Xvnc desktop no record accounts for');
      removed++;
    }
    return removed;
  }

  describe(handle: DesktopHandle): Record<string, string> {
    const h = asHandle(handle);
    return { display: `:${h.display}`, pid: String(h.xvncPid), size: `${h.width}x${h.height}` };
  }
}
