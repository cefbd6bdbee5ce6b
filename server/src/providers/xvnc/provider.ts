/**
 * X11 desktops: one TigerVNC Xvnc per desktop, RFB only on a private unix socket (no TCP), X
 * only for clients holding the desktop's cookie, plus the pool's session command (window
 * manager and apps). As root, each desktop runs as its own account inside its own sandbox and
 * cgroup (see sandbox/launch.ts); started detached so it outlives a server restart.
 *
 * This file is the Provider; its parts live beside it: the handle (handle.ts), X display
 * numbers (displays.ts), what runs in a desktop (session.ts), starting (start.ts) and
 * stopping it (stop.ts), the home (home.ts), and sweeping the run directory (sweep.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import type { Logger } from 'pino';
import { XvncTemplate } from '@vdi/shared';
import type { RfbEndpoint } from '../../rfb/endpoint.js';
import { probeBanner } from '../../rfb/probe.js';
import { checkProcess, processAlive } from '../processes.js';
import { UidAllocator, type DesktopAccount, type UidRange } from '../sandbox/accounts.js';
import { Cgroups, type CgroupRef } from '../sandbox/cgroups.js';
import { HomeDisks } from '../sandbox/home-disk.js';
import { checkCgroupPaths, type Isolation } from '../sandbox/launch.js';
import { uidOf } from '../sandbox/proc.js';
import {
  type CreateSpec,
  type DesktopHandle,
  type DesktopHealth,
  type Provider,
  type ProviderDirs,
  type ProviderStatus,
} from '../types.js';
import { displayTaken, removeDisplayLeftovers } from './displays.js';
import { appExitReason, appSessionCommand, prepareAppHome } from './app.js';
import { XvncAudio } from './audio.js';
import { XvncFiles } from './files.js';
import { asHandle } from './handle.js';
import { prepareHome } from './home.js';
import { DESKTOP_PATH } from './session.js';
import { startSandboxed, startShared, type StartContext } from './start.js';
import { stopDesktop } from './stop.js';
import { sweepRunDirs } from './sweep.js';

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

const DEFAULT_UID_RANGE: UidRange = { base: 400_000, count: 1000 };

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
            // the supervisor waits for the sandbox's loopback with them before slirp4netns
            ['nsenter', 'util-linux'],
            ['ip', 'iproute2'],
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

  /** Is display n taken, for desktops sharing the host's /tmp? (A test makes it miss some.) */
  protected displayInUse(n: number, abstract: Set<number>): boolean {
    return displayTaken(n, this.reserved, abstract);
  }

  private desktopDir(desktopId: string): string {
    return path.join(this.opts.dataDir, 'xvnc', desktopId);
  }

  async create(spec: CreateSpec, log: Logger): Promise<DesktopHandle> {
    const parsed = XvncTemplate.parse(spec.template);
    // a published application is its own session (app.ts)
    const tpl = parsed.app ? { ...parsed, sessionCommand: appSessionCommand(parsed.app) } : parsed;
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
      if (tpl.app) prepareAppHome(home, account);
      if (account) {
        fs.chmodSync(home, 0o700);
        fs.chownSync(desk, account.uid, account.gid);
      }
      if (this.cgroups && account) {
        cgroup = this.cgroups.create(`${this.tag}.x.${spec.desktopId}`, tpl.limits);
        checkCgroupPaths(this.cgroups.procsFiles(cgroup));
      }
      const handle = sandboxed
        ? await startSandboxed(
            this.startContext(),
            spec,
            tpl,
            { base, desk, home, account: account!, cgroup },
            log,
          )
        : await startShared(
            this.startContext(),
            spec,
            tpl,
            { base, desk, home, account, cgroup },
            log,
          );
      if (tpl.app) handle.app = tpl.app.name;
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

  /** What starting a desktop needs of this provider. */
  private startContext(): StartContext {
    return {
      binary: this.binary,
      dataDir: this.opts.dataDir,
      runDir: this.opts.runDir,
      uidBase: (this.opts.uidRange ?? DEFAULT_UID_RANGE).base,
      startTimeoutMs: this.opts.startTimeoutMs ?? 15000,
      firstDisplay: this.opts.firstDisplay ?? 20,
      cgroups: this.cgroups,
      reserved: this.reserved,
      displayInUse: (n, abstract) => this.displayInUse(n, abstract),
    };
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
    // Xvnc lives (its pid, start time and account checked above) but its socket refuses or
    // hangs up: a full listen backlog after a freeze (probes and viewers piled up while it was
    // stopped), or the desktop's own user removed their socket. Not dead while the process
    // lives: the viewers keep trying, and an admin can reset it.
    return { state: 'unresponsive', reason: 'RFB socket refuses connections' };
  }

  async destroy(handle: DesktopHandle, log: Logger, opts?: { keepDisk?: boolean }): Promise<void> {
    const h = asHandle(handle);
    await stopDesktop(this.cgroups, h);
    const base =
      h.isolation === 'none' || h.isolation === undefined
        ? path.dirname(h.socket)
        : path.dirname(path.dirname(h.socket));
    fs.rmSync(base, { recursive: true, force: true });
    // Xvnc removes these on a clean exit; after SIGKILL they stay and would block the display
    if (
      h.isolation !== 'sandbox' &&
      !(await processAlive({ pid: h.xvncPid, startTime: h.xvncStart }))
    )
      removeDisplayLeftovers(h.display);
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
    const removed = await sweepRunDirs(
      this.opts.runDir,
      handles,
      (recorded) => this.destroy(recorded as unknown as DesktopHandle, log, { keepDisk: true }),
      log,
    );
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

  appExited(handle: DesktopHandle): Promise<string | undefined> {
    return appExitReason(asHandle(handle));
  }

  audio(handle: DesktopHandle): XvncAudio {
    return new XvncAudio(asHandle(handle));
  }

  files(handle: DesktopHandle): XvncFiles {
    const h = asHandle(handle);
    return new XvncFiles({ home: h.home, account: h.account });
  }

  /** the cgroup module in use (for the admin view's usage figures); undefined when none */
  cgroupsInUse(): Cgroups | undefined {
    return this.cgroups;
  }
}

function onPath(bin: string): boolean {
  return DESKTOP_PATH.split(':').some((d) => fs.existsSync(path.join(d, bin)));
}

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return fallback;
  }
}
