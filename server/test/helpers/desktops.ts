/**
 * Real Xvnc desktops as the integration tests see them: a server whose Xvnc provider has its
 * own range of X displays, the handle the store keeps for a desktop, and the processes behind
 * it read straight from /proc (not through the provider code under test), so a file can
 * check that no Xvnc outlives it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import type { ServerDeps } from '../../src/app.js';
import type { Config } from '../../src/config/index.js';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import { readPids } from '../../src/providers/sandbox/cgroups.js';
import { XvncProvider } from '../../src/providers/xvnc/provider.js';
import { Api, startServer, until, type TestServer } from './server.js';

/** No default pool, and the broker's timer parked: each test drives `broker.tick()` itself. */
export const PARKED_BROKER = { DEFAULT_POOL: 'false', BROKER_TICK_MS: '3600000' };

/**
 * The real Xvnc provider on its own range of X display numbers: other test suites on this
 * machine start desktops from :20 up at the same time, and a display another server grabs
 * between the provider's check and Xvnc's start is retried, not skipped.
 */
export function xvncProvider(config: Config, firstDisplay: number): XvncProvider {
  return new XvncProvider({
    runDir: config.runDir,
    dataDir: config.dataDir,
    isolation: config.desktopIsolation,
    uidRange: config.desktopUids,
    uidLockDir: config.desktopUids.lockDir,
    cgroupParent: config.cgroupParent,
    firstDisplay,
  });
}

/** The whole server in-process, its desktops on Xvnc from display `firstDisplay` up. */
export function startXvncServer(
  config: Config,
  firstDisplay: number,
  deps: ServerDeps = {},
): Promise<TestServer> {
  return startServer(config, { ...deps, providers: [xvncProvider(config, firstDisplay)] });
}

/** Runs a last broker tick, force-deletes the pools (stopping their desktops), closes the server. */
export async function deletePoolsAndClose(
  ts: TestServer,
  admin: Api,
  poolIds: readonly string[],
): Promise<void> {
  await ts.server.broker.tick();
  for (const id of poolIds) await admin.del(`/api/admin/pools/${id}?force=true`);
  await ts.close();
}

/** the parent pid of a process, from /proc */
function parentOf(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/**
 * Does the process, or one of its near ancestors, mention `dir` in its command line or
 * environment? A sandboxed Xvnc sees only its own paths; its root supervisor, three levels up,
 * names the desktop's run directory in its environment.
 */
function startedUnder(pid: number, dir: string): boolean {
  for (let p: number | undefined = pid, depth = 0; p && p > 1 && depth < 4; depth++) {
    try {
      if (
        fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir) ||
        fs.readFileSync(`/proc/${p}/environ`, 'utf8').includes(dir)
      )
        return true;
    } catch {
      return false;
    }
    p = parentOf(p);
  }
  return false;
}

/** pids of Xvnc processes started under `dir`, ascending (zombies have none) */
export function xvncUnder(dir: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (path.basename(argv[0] ?? '') === 'Xvnc' && startedUnder(Number(e), dir))
        out.push(Number(e));
    } catch {
      /* exited while we looked */
    }
  }
  return out.sort((a, b) => a - b);
}

/**
 * How root on the host runs an X client on a desktop: with the desktop's cookie, and for a
 * sandboxed desktop inside its mount and network namespaces (its X socket is in its private
 * /tmp). Paths the client opens are the desktop's: use `homeInside` for its home.
 */
export function xInvocation(
  h: XvncHandle,
  argv: string[],
): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  const xEnv = h.xEnv ?? { DISPLAY: `:${h.display}`, XAUTHORITY: '' };
  if (h.isolation === 'sandbox') {
    return {
      file: 'nsenter',
      args: [
        '-t',
        String(h.xvncPid),
        '-m',
        '-n',
        '--',
        'env',
        `DISPLAY=${xEnv.DISPLAY}`,
        `XAUTHORITY=${xEnv.XAUTHORITY}`,
        ...argv,
      ],
      env: process.env,
    };
  }
  const [file, ...args] = argv;
  return { file: file!, args, env: { ...process.env, ...xEnv } };
}

/** the desktop's home as its own programs (and xInvocation's clients) see it */
export function homeInside(h: XvncHandle): string {
  return h.isolation === 'sandbox' && h.account ? `/home/${h.account.name}` : h.home;
}

/**
 * The end of a file that ran Xvnc desktops in `dirs`: kills any Xvnc still running there —
 * and fails, since the server should have stopped it — then removes the directories.
 */
export function expectNoXvncLeft(dirs: { dataDir: string; runDir: string }): void {
  const left = xvncUnder(dirs.runDir);
  for (const pid of left) process.kill(pid, 'SIGKILL');
  expect(left, 'Xvnc processes left running').toEqual([]);
  fs.rmSync(dirs.dataDir, { recursive: true, force: true });
  fs.rmSync(dirs.runDir, { recursive: true, force: true });
}

/** Is the process there and not a zombie? */
export function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may contain spaces and ')': the state follows the last ')'
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '');
  } catch {
    return false;
  }
}

/** The pid a pid file names; undefined while the file is missing, empty or not a pid. */
export function pidInFile(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * SIGKILL the QEMU of every pid file under `<runDir>/qemu/@<host>/`: the VMs on the other
 * hosts of a move test, destinations of moves that failed or were interrupted included.
 */
export function killMovedVms(runDir: string): void {
  const qemuDir = path.join(runDir, 'qemu');
  if (!fs.existsSync(qemuDir)) return;
  for (const d of fs.readdirSync(qemuDir, { withFileTypes: true })) {
    if (!d.isDirectory()) continue;
    for (const f of fs.readdirSync(path.join(qemuDir, d.name))) {
      const pid = f.endsWith('.pid') ? pidInFile(path.join(qemuDir, d.name, f)) : undefined;
      if (pid !== undefined && alive(pid)) process.kill(-pid, 'SIGKILL');
    }
  }
}

/**
 * The provider's handle in a desktop row, as the broker gives it (parsed) or as a test reads it
 * from the table (JSON text); fails the test when the row has none.
 */
export function handleOf<H = XvncHandle>(row: {
  handle: string | Record<string, unknown> | null;
}): H {
  expect(row.handle, 'the desktop has a handle').toBeTruthy();
  return (typeof row.handle === 'string' ? JSON.parse(row.handle) : row.handle) as H;
}

/** The provider's handle the store keeps for a desktop; fails the test when it has none. */
export async function desktopHandle<H = XvncHandle>(ts: TestServer, desktopId: string): Promise<H> {
  const row = await ts.server.broker.desktop(desktopId);
  expect(row, `desktop ${desktopId}`).toBeDefined();
  return handleOf<H>(row!);
}

/** What a test's clean-up reads of a desktop's handle (as the store keeps it). */
export interface LeftDesktop {
  supervisorPid?: number;
  initPid?: number;
  xvncPid?: number;
  sessionPid?: number;
  cgroup?: { dirs: string[] };
}

/**
 * Ends a desktop a test's server left running (the server was stopped or killed, so no log
 * off ran): its own processes, then everything in its cgroup — slirp4netns runs outside the
 * sandbox's PID namespace and outlives its supervisor — and removes the cgroup.
 */
export async function killLeftDesktop(h: LeftDesktop | undefined): Promise<void> {
  if (!h) return;
  const kill = (pid: number) => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  };
  for (const pid of [h.supervisorPid, h.initPid, h.xvncPid, h.sessionPid])
    if (pid !== undefined && alive(pid)) kill(pid);
  const dirs = h.cgroup?.dirs ?? [];
  await until(
    () => {
      const left = dirs.flatMap(readPids).filter(alive);
      left.forEach(kill);
      return left.length === 0;
    },
    10_000,
    'the desktop cgroup to empty',
  );
  for (const dir of dirs) {
    try {
      fs.rmdirSync(dir); // a cgroup goes with rmdir once empty
    } catch {
      /* removed already */
    }
  }
}
