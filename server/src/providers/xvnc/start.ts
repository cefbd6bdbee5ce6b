/**
 * Starting a desktop: its first process runs detached (own session and process group) so it
 * outlives the server, and the desktop is up once Xvnc answers on its RFB socket and the
 * session has started. A sandboxed desktop starts in bubblewrap under a root supervisor
 * (sandbox/launch.ts); the others start in the host's namespaces, where X display numbers
 * are shared and allocated here.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { XvncTemplate } from '@vdi/shared';
import { probeBanner } from '../../rfb/probe.js';
import { processAlive, readProcStat, stopGroups, waitFor } from '../processes.js';
import type { DesktopAccount } from '../sandbox/accounts.js';
import type { CgroupRef, Cgroups } from '../sandbox/cgroups.js';
import { buildLaunch, readSandboxInfo, SUPERVISOR_EXIT } from '../sandbox/launch.js';
import { childrenOf, commOf, hostPidOf, readUntrustedSmallFile } from '../sandbox/proc.js';
import { writeXauthority } from '../sandbox/xauth.js';
import { ProviderError, type CreateSpec } from '../types.js';
import {
  abstractDisplays,
  claimDisplay,
  DISPLAY_TAKEN,
  ensureX11SocketDir,
  sandboxDisplay,
  X11_SOCKET_DIR,
} from './displays.js';
import type { XvncHandle } from './handle.js';
import { initCommand, runtimeInside, serverAccountName, sessionEnv, xvncArgs } from './session.js';
import { killDesktop } from './stop.js';

/** What starting a desktop needs of its provider. */
export interface StartContext {
  /** the Xvnc binary */
  binary: string;
  dataDir: string;
  runDir: string;
  /** first uid of the desktop accounts (sandboxed displays are numbered from it) */
  uidBase: number;
  /** how long Xvnc may take to accept connections, ms */
  startTimeoutMs: number;
  /** first display number tried in the host's namespaces */
  firstDisplay: number;
  cgroups: Cgroups | undefined;
  /** displays being started by this provider right now (shared namespaces) */
  reserved: Set<number>;
  /** is display n taken (shared namespaces)? */
  displayInUse(n: number, abstract: Set<number>): boolean;
}

/** A desktop's directories and what it runs as, made ready by the provider. */
export interface DesktopDirs {
  /** root-owned: what the server records about the desktop (its handle, bwrap's info, logs) */
  base: string;
  /** the desktop account's own: its RFB socket, X socket directory, cookie */
  desk: string;
  /** the desktop's home on the host */
  home: string;
  account: DesktopAccount | undefined;
  cgroup: CgroupRef | undefined;
}

/** A desktop in its own sandbox: its account, bubblewrap namespaces and network. */
export async function startSandboxed(
  ctx: StartContext,
  spec: CreateSpec,
  tpl: XvncTemplate,
  d: DesktopDirs & { account: DesktopAccount },
  log: Logger,
): Promise<XvncHandle> {
  const { account } = d;
  const display = sandboxDisplay(account.uid, ctx.uidBase);
  const x11 = path.join(d.desk, 'x11');
  fs.mkdirSync(x11, { mode: 0o700 });
  fs.chownSync(x11, account.uid, account.gid);
  const runtime = runtimeInside(account.uid);
  const homeInside = `/home/${account.name}`;
  writeXauthority(path.join(d.desk, 'Xauthority'), account);
  const env = sessionEnv({
    display,
    home: homeInside,
    runtime,
    user: account.name,
    session: tpl.sessionCommand,
  });
  const launch = buildLaunch({
    isolation: 'sandbox',
    account,
    cgroupProcs: d.cgroup && ctx.cgroups ? ctx.cgroups.procsFiles(d.cgroup) : [],
    metaDir: d.base,
    network: tpl.network,
    home: { host: d.home, inside: homeInside },
    runtime: { host: d.desk, inside: runtime },
    binds: [{ host: x11, inside: X11_SOCKET_DIR }],
    hide: [path.resolve(ctx.dataDir), path.resolve(ctx.runDir)],
    hostname: `desktop-${spec.desktopId.slice(0, 8)}`,
    env,
    command: initCommand(xvncArgs(ctx.binary, display, tpl, spec.desktopId, runtime)),
  });
  const logFile = path.join(d.base, 'desktop.log');
  const supervisor = spawnDetached(launch.argv, launch.env, logFile);
  const socket = path.join(d.desk, 'rfb.sock');
  const started = Date.now();
  // how far the start got: a start that times out says where it stopped
  let waitingFor = 'bubblewrap to make the sandbox';
  try {
    const ready = await waitFor(
      async () => {
        if (!(await processAlive({ pid: supervisor.pid })) || supervisor.exited())
          throw new Error(`the sandbox exited${exitReason(supervisor.code())}`);
        const info = readSandboxInfo(d.base);
        if (!info) return undefined;
        waitingFor = tpl.network === 'outbound' ? 'slirp4netns or Xvnc to start' : 'Xvnc to start';
        const xvnc = childrenOf(info.childPid).find((p) => commOf(p) === 'Xvnc');
        if (xvnc === undefined) return undefined;
        waitingFor = 'Xvnc to make its RFB socket';
        if (!fs.existsSync(socket)) return undefined;
        waitingFor = 'Xvnc to answer on its RFB socket';
        if (!(await probeBanner({ kind: 'unix', path: socket }, 1000)).ok) return undefined;
        waitingFor = 'the session to start';
        const nsSession = Number(readUntrustedSmallFile(path.join(d.desk, 'session.pid'))?.trim());
        if (!Number.isInteger(nsSession) || nsSession <= 0) return undefined;
        waitingFor = `the session (pid ${nsSession} in the sandbox) to be found`;
        const session = hostPidOf(info.pidNamespace, nsSession);
        if (session === undefined) return undefined;
        return { info, xvnc, session };
      },
      ctx.startTimeoutMs,
      'the sandboxed Xvnc to accept connections',
    );
    log.debug({ desktopId: spec.desktopId, ms: Date.now() - started }, 'sandboxed desktop started');
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
    await killDesktop(
      ctx.cgroups,
      { supervisorPid: supervisor.pid, cgroup: d.cgroup },
      readSandboxInfo(d.base)?.childPid,
    );
    const tail =
      readTail(logFile) +
      readTail(path.join(d.base, 'slirp.log')) +
      // the session's own output: the desktop's file, read as an untrusted one
      (readUntrustedSmallFile(path.join(d.desk, 'session.log'), 2000) ?? '');
    log.error(
      { desktopId: spec.desktopId, err: e, waitingFor, ms: Date.now() - started, tail },
      'sandboxed Xvnc did not start',
    );
    throw new ProviderError(
      'XVNC_START_FAILED',
      `Xvnc did not start in its sandbox: ${(e as Error).message} (still waiting for ${waitingFor})\n${tail}`,
    );
  }
}

/** Desktops in the host's namespaces: they share /tmp/.X11-unix, so displays are allocated. */
export async function startShared(
  ctx: StartContext,
  spec: CreateSpec,
  tpl: XvncTemplate,
  d: DesktopDirs,
  log: Logger,
): Promise<XvncHandle> {
  const first = ctx.firstDisplay;
  ensureX11SocketDir();
  writeXauthority(path.join(d.desk, 'Xauthority'), d.account);
  const logFile = path.join(d.base, 'desktop.log');
  const socket = path.join(d.desk, 'rfb.sock');
  // displays Xvnc found taken although no lock file said so when we looked
  const taken = new Set<number>();
  for (let attempt = 0; attempt < 20; attempt++) {
    let display = first;
    const abstract = abstractDisplays();
    let release: (() => void) | undefined;
    // the first free number this host-wide claim can take (another node on this host may be
    // starting on one the lock files do not show yet)
    for (; ; display++) {
      if (taken.has(display) || ctx.displayInUse(display, abstract)) continue;
      release = claimDisplay(display);
      if (release) break;
    }
    taken.add(display);
    ctx.reserved.add(display);
    try {
      const env = sessionEnv({
        display,
        home: d.home,
        runtime: d.desk,
        user: d.account?.name ?? serverAccountName(),
        session: tpl.sessionCommand,
      });
      const launch = buildLaunch({
        isolation: d.account ? 'account' : 'none',
        account: d.account,
        cgroupProcs: d.cgroup && ctx.cgroups ? ctx.cgroups.procsFiles(d.cgroup) : [],
        metaDir: d.base,
        network: 'host',
        env,
        command: initCommand(xvncArgs(ctx.binary, display, tpl, spec.desktopId, d.desk)),
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
          ctx.startTimeoutMs,
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
        if (d.cgroup && ctx.cgroups) await ctx.cgroups.kill(d.cgroup);
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
      ctx.reserved.delete(display);
      release();
    }
  }
  throw new ProviderError('NO_DISPLAY', 'no free X display number found');
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
