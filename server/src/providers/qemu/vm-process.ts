/**
 * The QEMU process of a desktop: started detached (its own process group and session, in
 * its cgroup when there is one) so it outlives the server; ready once its QMP socket answers
 * and its VNC socket shows the RFB banner; stopped with QMP `quit`, then signals; and found
 * in /proc when no record accounts for it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { probeBanner } from '../../rfb/probe.js';
import { checkProcess, killGroup, readProcStat, signalProcess, waitGone } from '../processes.js';
import type { CgroupRef, Cgroups } from '../sandbox/cgroups.js';
import { joinCgroupsArgv } from '../sandbox/launch.js';
import { ProviderError } from '../types.js';
import { DISK_FD_RO, DISK_FD_RW, optValue } from './command-line.js';
import { DESKTOP_ID, type QemuHandle, type VmPaths } from './handle.js';
import { exists } from './overlays.js';
import { QmpError } from './qmp-wire.js';
import { qmpExecute } from './qmp-client.js';

/** how long QEMU gets to exit after QMP quit, then after SIGTERM, before SIGKILL */
const QUIT_GRACE_MS = 5_000;
const TERM_GRACE_MS = 3_000;
const KILL_WAIT_MS = 5_000;
/** between two readiness checks */
const POLL_INTERVAL_MS = 50;

export interface VmProcessesOptions {
  qemuBinary: string;
  /** the provider's own run directory (`<runDir>/qemu`): QEMU's working directory */
  runDir: string;
  /** how long QEMU may take to open its QMP and VNC sockets, ms */
  startTimeoutMs: number;
  cgroups: Cgroups | undefined;
  /** a desktop's files */
  pathsFor(desktopId: string): VmPaths;
}

export class VmProcesses {
  constructor(private readonly opts: VmProcessesOptions) {}

  /** Spawns QEMU and waits for its QMP and VNC sockets; on failure leaves nothing running. */
  async start(
    desktopId: string,
    args: string[],
    paths: VmPaths,
    log: Logger,
    cgroup?: CgroupRef,
    /** added to QEMU's environment (the postcopy preload) */
    env?: Record<string, string>,
  ): Promise<number> {
    const { qemuBinary, cgroups } = this.opts;
    for (const p of [paths.qmpPath, paths.vncPath, paths.pidPath]) await fs.rm(p, { force: true });
    const logFile = await fs.open(paths.logPath, 'w', 0o600);
    // the overlay as descriptors 3 (read-write) and 4 (read-only): see command-line.ts
    const disk = await Promise.all([
      fs.open(paths.overlayPath, 'r+'),
      fs.open(paths.overlayPath, 'r'),
    ]).catch(async (err: unknown) => {
      await logFile.close();
      throw new ProviderError(
        'QEMU_START_FAILED',
        `cannot open the disk ${paths.overlayPath}: ${(err as Error).message}`,
      );
    });
    // QEMU's command, after `env` when it needs more in its environment (exec keeps the pid)
    const qemu = [
      ...(env ? ['/usr/bin/env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`)] : []),
      qemuBinary,
      ...args,
    ];
    let child: ChildProcess;
    try {
      // Detached: own process group and session, so the VM survives the server and a
      // signal to the server's group does not reach it.
      // with a cgroup, a shell joins it first and then becomes QEMU (same pid)
      const [cmd, ...argv] =
        cgroup && cgroups
          ? joinCgroupsArgv(cgroups.procsFiles(cgroup), qemu, [DISK_FD_RW, DISK_FD_RO])
          : qemu;
      child = spawn(cmd!, argv, {
        detached: true,
        stdio: ['ignore', logFile.fd, logFile.fd, disk[0].fd, disk[1].fd],
        cwd: this.opts.runDir,
      });
    } finally {
      await logFile.close();
      for (const fh of disk) await fh.close();
    }
    let exited: string | undefined;
    child.once('error', (err) => {
      exited = `could not start ${qemuBinary}: ${err.message}`;
    });
    child.once('exit', (code, signal) => {
      exited = `QEMU exited (${signal ?? `code ${code}`})`;
      log.info({ desktopId, pid: child.pid, code, signal }, 'qemu process exited');
    });
    child.unref();
    try {
      return await this.waitReady(child, paths, () => exited);
    } catch (err) {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null)
        killGroup(child.pid, 'SIGKILL');
      const qemuLog = await tail(paths.logPath);
      for (const p of [paths.qmpPath, paths.vncPath, paths.pidPath])
        await fs.rm(p, { force: true });
      if (err instanceof ProviderError) {
        throw new ProviderError(err.code, qemuLog ? `${err.message}: ${qemuLog}` : err.message);
      }
      throw err;
    }
  }

  /**
   * Starts QEMU with the first of these `-cpu` models the host accepts (undefined: QEMU's
   * default), building each try's arguments with `argsFor`. Nested hypervisors may refuse
   * some MSRs of `-cpu host` (QEMU aborts with "failed to set MSR"); a model without them
   * still runs with KVM. Any other failure ends the tries.
   */
  async startFirst(
    cpus: readonly (string | undefined)[],
    argsFor: (cpu: string | undefined) => Promise<string[]>,
    vm: VmPaths & { desktopId: string },
    log: Logger,
    cgroup?: CgroupRef,
  ): Promise<{ pid: number; cpu: string | undefined }> {
    for (const [i, cpu] of cpus.entries()) {
      const args = await argsFor(cpu);
      try {
        return { pid: await this.start(vm.desktopId, args, vm, log, cgroup), cpu };
      } catch (err) {
        const next = cpus[i + 1];
        if (
          next === undefined ||
          !(err instanceof ProviderError) ||
          !/failed to set MSR/.test(err.message)
        )
          throw err;
        log.warn(
          { desktopId: vm.desktopId, cpu, next },
          'KVM rejected this CPU model; retrying with the next one',
        );
      }
    }
    throw new ProviderError('QEMU_START_FAILED', 'QEMU did not start');
  }

  /** QMP quit, then SIGTERM, then SIGKILL; throws only when the process survives all three. */
  async stop(h: QemuHandle, log: Logger): Promise<void> {
    if (!(await checkProcess(h)).alive) return;
    let quitSent = true;
    try {
      await qmpExecute(h.qmpPath, 'quit', undefined, { timeoutMs: 2_000, commandTimeoutMs: 2_000 });
    } catch (err) {
      // QEMU may close the socket before its answer to quit arrives: that is success
      quitSent = err instanceof QmpError && err.code === 'QMP_CLOSED';
    }
    if (quitSent && (await waitGone([h], QUIT_GRACE_MS))) return;
    log.warn({ desktopId: h.desktopId, pid: h.pid }, 'qemu did not quit; sending SIGTERM');
    await signalProcess(h, 'SIGTERM');
    // a stopped (SIGSTOP) process handles SIGTERM only once continued
    await signalProcess(h, 'SIGCONT');
    if (await waitGone([h], TERM_GRACE_MS)) return;
    log.warn({ desktopId: h.desktopId, pid: h.pid }, 'qemu ignored SIGTERM; sending SIGKILL');
    await signalProcess(h, 'SIGKILL');
    if (!(await waitGone([h], KILL_WAIT_MS))) {
      throw new ProviderError('QEMU_STOP_FAILED', `QEMU process ${h.pid} survived SIGKILL`);
    }
  }

  /** A second QEMU on the same overlay and sockets would corrupt both. */
  async refuseIfRunning(desktopId: string, paths: VmPaths): Promise<void> {
    let pid: number;
    try {
      pid = Number((await fs.readFile(paths.pidPath, 'utf8')).trim());
    } catch {
      return;
    }
    if (!Number.isInteger(pid) || pid <= 0) return;
    const argv = await readCmdline(pid);
    const stat = await readProcStat(pid);
    if (argv?.some((a) => a.includes(optValue(paths.qmpPath))) && stat && stat.state !== 'Z') {
      throw new ProviderError(
        'QEMU_ALREADY_RUNNING',
        `desktop ${desktopId} already has a running VM (pid ${pid}); destroy it first`,
      );
    }
  }

  /**
   * Stops the QEMU processes that use this provider's run directory but are none of the
   * known VMs (the server died before recording them), and removes their sockets and pid
   * files; their disks stay. Returns how many it stopped.
   */
  async sweep(known: readonly QemuHandle[], log: Logger): Promise<number> {
    const knownPids = new Set(known.map((h) => `${h.pid}:${h.startTime}`));
    const prefix = `unix:${optValue(this.opts.runDir + path.sep)}`;
    let removed = 0;
    for (const entry of await fs.readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const pid = Number(entry);
      const argv = await readCmdline(pid);
      const qmpArg = argv?.[argv.indexOf('-qmp') + 1];
      if (!argv || !argv.includes('-qmp') || !qmpArg?.startsWith(prefix)) continue;
      const stat = await readProcStat(pid);
      if (!stat || stat.state === 'Z' || knownPids.has(`${pid}:${stat.startTime}`)) continue;
      const h = { pid, startTime: stat.startTime };
      log.warn({ pid, qmp: qmpArg }, 'stopping a qemu desktop no record accounts for');
      await signalProcess(h, 'SIGTERM');
      await signalProcess(h, 'SIGCONT');
      if (!(await waitGone([h], TERM_GRACE_MS))) {
        await signalProcess(h, 'SIGKILL');
        await waitGone([h], KILL_WAIT_MS);
      }
      // its sockets and pid file, in the directory its QMP socket is in (a moved VM's files
      // are in its host's directory, beside another QEMU's of the same desktop); the disk
      // stays (it may be a dedicated desktop's)
      const qmpPath = qmpSocketPath(qmpArg);
      const id = path.basename(qmpPath, '.qmp');
      if (qmpPath.endsWith('.qmp') && DESKTOP_ID.test(id)) {
        const dir = path.dirname(qmpPath);
        for (const ext of ['qmp', 'vnc', 'pid'])
          await fs.rm(path.join(dir, `${id}.${ext}`), { force: true });
      }
      removed++;
    }
    return removed;
  }

  private async waitReady(
    child: ChildProcess,
    paths: VmPaths,
    exited: () => string | undefined,
  ): Promise<number> {
    const { qemuBinary, startTimeoutMs } = this.opts;
    const deadline = Date.now() + startTimeoutMs;
    let qmpUp = false;
    for (;;) {
      const why = exited();
      if (why) throw new ProviderError('QEMU_START_FAILED', why);
      if (child.pid === undefined)
        throw new ProviderError('QEMU_START_FAILED', `could not start ${qemuBinary}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ProviderError(
          'QEMU_START_TIMEOUT',
          `QEMU did not open its ${qmpUp ? 'VNC' : 'QMP'} socket within ${startTimeoutMs} ms`,
        );
      }
      if (!qmpUp && (await exists(paths.qmpPath))) {
        try {
          await qmpExecute(paths.qmpPath, 'query-status', undefined, {
            timeoutMs: Math.min(left, 5_000),
          });
          qmpUp = true;
        } catch {
          /* not listening yet */
        }
      }
      if (
        qmpUp &&
        (await exists(paths.vncPath)) &&
        // the RFB version banner: proof that QEMU's VNC server is up
        (await probeBanner({ kind: 'unix', path: paths.vncPath }, Math.min(left, 2_000))).ok
      ) {
        return child.pid;
      }
      await delay(POLL_INTERVAL_MS);
    }
  }
}

/** The socket path of a `-qmp unix:<path>,server=on,...` argument (commas in it are doubled). */
function qmpSocketPath(arg: string): string {
  const value = arg.slice('unix:'.length);
  let out = '';
  for (let i = 0; i < value.length; i++) {
    if (value[i] !== ',') {
      out += value[i];
    } else if (value[i + 1] === ',') {
      out += ',';
      i++;
    } else break;
  }
  return out;
}

async function readCmdline(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((s) => s !== '');
  } catch {
    return undefined;
  }
}

async function tail(file: string, bytes = 2000): Promise<string> {
  try {
    const text = await fs.readFile(file, 'utf8');
    return text.slice(-bytes).trim();
  } catch {
    return '';
  }
}
