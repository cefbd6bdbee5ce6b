import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { z } from 'zod';
import { QemuTemplate } from '@vdi/shared';
import { createHash } from 'node:crypto';
import { checkProcess, killGroup, readProcStat, signalProcess, waitGone } from './process-util.js';
import { QmpClient, QmpError, qmpExecute } from './qmp.js';
import { UidAllocator, type UidRange } from './sandbox/accounts.js';
import { Cgroups, type CgroupRef } from './sandbox/cgroups.js';
import { checkCgroupPaths, joinCgroupsArgv } from './sandbox/launch.js';
import {
  ProviderError,
  type CreateSpec,
  type DesktopHandle,
  type DesktopHealth,
  type Provider,
  type ProviderDirs,
  type ProviderStatus,
} from './types.js';
import type { RfbEndpoint } from '../rfb/endpoint.js';
import { probeBanner } from '../rfb/probe.js';

/**
 * QEMU virtual machines as desktops. Each desktop boots from its own qcow2 overlay (a
 * linked clone) on top of the pool's golden image, which is only ever opened read-only.
 * QEMU runs detached in its own process group with a private VNC unix socket (the
 * desktop's RFB endpoint) and a QMP unix socket (control), both in `<runDir>/qemu` (0700), so
 * it outlives the server and is found again from its handle (DESIGN.md decision 2).
 */

const execFileAsync = promisify(execFile);

export type QemuAccel = 'kvm' | 'tcg';

export interface QemuProviderOptions {
  /** @default 'qemu-system-x86_64' from PATH */
  qemuBinary?: string;
  /** @default 'qemu-img' from PATH */
  qemuImgBinary?: string;
  /** 'auto' uses KVM when /dev/kvm opens read-write, TCG (software emulation) otherwise @default 'auto' */
  accel?: 'auto' | 'kvm' | 'tcg';
  /**
   * When the server runs as root, QEMU drops to an account once it has opened its files
   * (`-runas`), so a compromised VM holds only the descriptors it was given. 'per-desktop':
   * each VM its own uid from `uidRange` (no passwd entry needed); a user name: that account for
   * every VM; null: never. @default 'per-desktop'
   */
  runAs?: 'per-desktop' | string | null;
  /** uids of per-desktop accounts (shared with the xvnc provider's range and locks) */
  uidRange?: UidRange;
  /** host-wide directory of uid locks @default '/run/vdi-uids' */
  uidLockDir?: string;
  /** cgroup parent of the VMs, as for the xvnc provider @default 'vdi' */
  cgroupParent?: string;
  /** how long QEMU may take to open its QMP and VNC sockets, in ms @default 30000 */
  startTimeoutMs?: number;
  /** QMP answer budget for health(), in ms; longer means unresponsive @default 3000 */
  healthTimeoutMs?: number;
  /** budget for savevm/loadvm, which copy the guest's RAM, in ms @default 120000 */
  snapshotTimeoutMs?: number;
  /** device node used to decide whether KVM is usable @default '/dev/kvm' */
  kvmDevice?: string;
  /**
   * `-cpu` model with KVM. By default `host`, and `host,-arch-capabilities` when KVM
   * refuses that MSR (nested virtualisation on some AMD hosts). TCG uses QEMU's default.
   */
  kvmCpu?: string;
}

const DEFAULT_START_TIMEOUT_MS = 30_000;
const DEFAULT_HEALTH_TIMEOUT_MS = 3_000;
const DEFAULT_SNAPSHOT_TIMEOUT_MS = 120_000;
/** QMP budget for short control commands (power actions, quit, query-block) */
const CONTROL_TIMEOUT_MS = 10_000;
/** how long QEMU gets to exit after QMP quit, then after SIGTERM, before SIGKILL */
const QUIT_GRACE_MS = 5_000;
const TERM_GRACE_MS = 3_000;
const KILL_WAIT_MS = 5_000;
/** between two readiness checks */
const POLL_INTERVAL_MS = 50;
const QEMU_IMG_TIMEOUT_MS = 60_000;
/** sockaddr_un.sun_path holds 108 bytes including the terminating NUL */
const MAX_UNIX_PATH_BYTES = 107;
/** the drive id, also how query-block names the desktop's disk */
const DISK_ID = 'disk0';
const DESKTOP_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/**
 * QEMU's own memory beside the guest's RAM (TCG's translation cache, device emulation, the
 * VNC server's framebuffer copies), added when a pool leaves the VM's memory limit at 0
 */
const QEMU_OVERHEAD_MB = 512;
/**
 * seccomp (`-sandbox on`): no obsolete syscalls, no spawning (fork/exec), no scheduler or
 * resource-limit changes. elevateprivileges stays allowed: QEMU itself calls setuid for
 * -runas after the filter is in place; once it runs as the desktop's account there is no
 * privilege to regain (and spawn=deny keeps it from executing setuid programs).
 */
const SECCOMP = 'on,obsolete=deny,spawn=deny,resourcecontrol=deny';
/** snapshot names go into an HMP command line: no spaces or quotes, ever */
const SNAPSHOT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const Handle = z.object({
  desktopId: z.string().regex(DESKTOP_ID),
  pid: z.number().int().positive(),
  /** field 22 of /proc/<pid>/stat (clock ticks after boot): a reused pid has another */
  startTime: z.string().regex(/^\d+$/),
  qmpPath: z.string().min(1),
  vncPath: z.string().min(1),
  pidPath: z.string().min(1),
  logPath: z.string().min(1),
  overlayPath: z.string().min(1),
  goldenPath: z.string().min(1),
  accel: z.enum(['kvm', 'tcg']),
  memoryMb: z.number().int().positive(),
  vcpus: z.number().int().positive(),
  /** the user QEMU dropped to, when it did */
  runAs: z.object({ user: z.string(), uid: z.number().int(), gid: z.number().int() }).optional(),
  /** the VM's cgroup (limits, usage, kill-all) */
  cgroup: z.object({ dirs: z.array(z.string()) }).optional(),
  limits: z
    .object({
      cpuWeight: z.number(),
      cpuMax: z.number(),
      memoryMb: z.number(),
      pids: z.number(),
      diskMb: z.number(),
    })
    .optional(),
  /** the memory limit written to the cgroup: the pool's, or RAM + QEMU's overhead */
  memoryLimitMb: z.number().optional(),
  /** whether the account is this VM's own (its uid lock is released at destroy) */
  ownAccount: z.boolean().optional(),
});
export type QemuHandle = z.infer<typeof Handle>;

function parseHandle(handle: DesktopHandle): QemuHandle {
  const parsed = Handle.safeParse(handle);
  if (!parsed.success) {
    throw new ProviderError(
      'QEMU_BAD_HANDLE',
      `not a qemu desktop handle: ${parsed.error.issues[0]?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

// ---- processes ---------------------------------------------------------------------------

/** Why the VM's process is not there, for health() and errors. */
function goneReason(pid: number, why: 'gone' | 'reused' | 'exited'): string {
  switch (why) {
    case 'gone':
      return `QEMU process ${pid} is gone`;
    case 'reused':
      return `pid ${pid} now belongs to another process`;
    case 'exited':
      return `QEMU process ${pid} has exited`;
  }
}

async function readCmdline(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((s) => s !== '');
  } catch {
    return undefined;
  }
}

// ---- small helpers --------------------------------------------------------------------------

/** QEMU option values are comma-separated key=value lists: a literal comma is written twice. */
function optValue(s: string): string {
  return s.replaceAll(',', ',,');
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
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

async function lookupUser(name: string): Promise<{ uid: number; gid: number } | undefined> {
  let passwd: string;
  try {
    passwd = await fs.readFile('/etc/passwd', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of passwd.split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name && uid !== undefined && gid !== undefined)
      return { uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}

// ---- the provider -------------------------------------------------------------------------

interface Paths {
  qmpPath: string;
  vncPath: string;
  pidPath: string;
  logPath: string;
  overlayPath: string;
}

const STATUS_HEALTH: Record<string, DesktopHealth> = {
  running: { state: 'running' },
  paused: { state: 'paused', reason: 'paused by an admin or QMP stop' },
  suspended: { state: 'paused', reason: 'guest suspended itself (ACPI S3)' },
  debug: { state: 'paused', reason: 'stopped in the debugger' },
  prelaunch: { state: 'paused', reason: 'not started yet (prelaunch)' },
  'save-vm': { state: 'paused', reason: 'saving a snapshot' },
  'restore-vm': { state: 'paused', reason: 'restoring a snapshot' },
  inmigrate: { state: 'paused', reason: 'waiting for an incoming migration' },
  postmigrate: { state: 'paused', reason: 'migrated away' },
  'finish-migrate': { state: 'paused', reason: 'finishing a migration' },
  shutdown: { state: 'unresponsive', reason: 'the guest has shut down' },
  'guest-panicked': { state: 'unresponsive', reason: 'the guest kernel panicked' },
  'internal-error': { state: 'unresponsive', reason: 'QEMU hit an internal error' },
  'io-error': { state: 'unresponsive', reason: 'stopped on a disk I/O error' },
  watchdog: { state: 'unresponsive', reason: 'the guest watchdog fired' },
};

export class QemuProvider implements Provider {
  readonly kind = 'qemu' as const;
  private readonly qemuBinary: string;
  private readonly qemuImgBinary: string;
  private readonly accelOption: 'auto' | 'kvm' | 'tcg';
  private readonly runAsOption: string | null;
  private readonly uids: UidAllocator | undefined;
  private readonly cgroups: Cgroups | undefined;
  /** prefix of this server's VM cgroup names */
  private readonly tag: string;
  private readonly startTimeoutMs: number;
  private readonly healthTimeoutMs: number;
  private readonly snapshotTimeoutMs: number;
  private readonly kvmDevice: string;
  private runAsFlag: Promise<'-runas' | '-run-with'> | undefined;
  private readonly kvmCpuCandidates: string[];
  /** the first KVM CPU model that started here, tried first from then on */
  private kvmCpuLearned: string | undefined;
  /** desktops with a savevm/loadvm in flight here: QMP is blocked meanwhile, not dead */
  private readonly busy = new Map<string, string>();
  /** `<runDir>/qemu`: this provider's sockets, pid files and logs */
  private readonly runDir: string;

  constructor(
    private readonly dirs: ProviderDirs,
    opts: QemuProviderOptions = {},
  ) {
    this.runDir = path.join(dirs.runDir, 'qemu');
    this.qemuBinary = opts.qemuBinary ?? 'qemu-system-x86_64';
    this.qemuImgBinary = opts.qemuImgBinary ?? 'qemu-img';
    this.accelOption = opts.accel ?? 'auto';
    this.runAsOption = opts.runAs === undefined ? 'per-desktop' : opts.runAs;
    const root = process.getuid?.() === 0;
    this.tag = createHash('sha256').update(path.resolve(dirs.runDir)).digest('hex').slice(0, 8);
    if (root && this.runAsOption === 'per-desktop')
      this.uids = new UidAllocator(
        opts.uidRange ?? { base: 400_000, count: 1000 },
        path.resolve(dirs.runDir),
        'qemu',
        opts.uidLockDir,
      );
    const cg = root ? Cgroups.detect({ parent: opts.cgroupParent ?? 'vdi' }) : undefined;
    this.cgroups = typeof cg === 'object' ? cg : undefined;
    this.startTimeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    this.healthTimeoutMs = opts.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS;
    this.snapshotTimeoutMs = opts.snapshotTimeoutMs ?? DEFAULT_SNAPSHOT_TIMEOUT_MS;
    this.kvmDevice = opts.kvmDevice ?? '/dev/kvm';
    this.kvmCpuCandidates = opts.kvmCpu ? [opts.kvmCpu] : ['host', 'host,-arch-capabilities'];
  }

  async status(): Promise<ProviderStatus> {
    const problems: string[] = [];
    let version = '';
    try {
      const { stdout } = await execFileAsync(this.qemuBinary, ['--version'], { timeout: 10_000 });
      version = /version (\S+)/.exec(stdout)?.[1] ?? 'unknown version';
    } catch (err) {
      problems.push(`${this.qemuBinary} does not run (${(err as Error).message.split('\n')[0]})`);
    }
    try {
      await execFileAsync(this.qemuImgBinary, ['--version'], { timeout: 10_000 });
    } catch (err) {
      problems.push(
        `${this.qemuImgBinary} does not run (${(err as Error).message.split('\n')[0]})`,
      );
    }
    try {
      await this.ensureDirs();
    } catch (err) {
      problems.push((err as Error).message);
    }
    let accel = '';
    try {
      const chosen = await this.resolveAccel();
      accel = chosen.accel === 'kvm' ? 'KVM' : `TCG (${chosen.why ?? 'no KVM'})`;
    } catch (err) {
      problems.push((err as Error).message);
    }
    if (problems.length > 0) return { ok: false, detail: problems.join('; ') };
    return { ok: true, detail: `QEMU ${version}, ${accel}` };
  }

  parseTemplate(template: unknown): Record<string, unknown> {
    return QemuTemplate.parse(template);
  }

  async create(spec: CreateSpec, log: Logger): Promise<DesktopHandle> {
    const template = QemuTemplate.parse(spec.template);
    const desktopId = spec.desktopId;
    if (!DESKTOP_ID.test(desktopId)) {
      throw new ProviderError(
        'QEMU_BAD_ID',
        `desktop id ${JSON.stringify(desktopId)} cannot name files (letters, digits, . _ - only)`,
      );
    }
    const goldenPath = path.resolve(template.image);
    const kernel = template.kernel ? path.resolve(template.kernel) : undefined;
    const initrd = template.initrd ? path.resolve(template.initrd) : undefined;
    for (const [what, file] of [
      ['golden image', goldenPath],
      ['kernel', kernel],
      ['initrd', initrd],
    ] as const) {
      if (file === undefined) continue;
      try {
        await fs.access(file, fsConstants.R_OK);
      } catch {
        throw new ProviderError(
          'QEMU_IMAGE_MISSING',
          `${what} ${file} does not exist or is not readable`,
        );
      }
    }
    const goldenStat = await fs.stat(goldenPath);
    if ((goldenStat.mode & 0o022) !== 0) {
      log.warn(
        { goldenPath },
        'golden image is writable by group or others; make it read-only (chmod 0444)',
      );
    }

    await this.ensureDirs();
    const paths = this.pathsFor(desktopId);
    for (const p of [paths.qmpPath, paths.vncPath]) {
      if (Buffer.byteLength(p) > MAX_UNIX_PATH_BYTES) {
        throw new ProviderError(
          'QEMU_PATH_TOO_LONG',
          `socket path ${p} is longer than ${MAX_UNIX_PATH_BYTES} bytes; use a shorter run directory`,
        );
      }
    }
    await this.refuseIfRunning(desktopId, paths);

    const { accel, why: noKvm } = await this.resolveAccel();
    const runAs = await this.resolveRunAs(desktopId);
    const ownAccount = runAs !== undefined && this.uids !== undefined;
    const memoryLimitMb =
      template.limits.memoryMb > 0
        ? template.limits.memoryMb
        : template.memoryMb + QEMU_OVERHEAD_MB;
    let cgroup: CgroupRef | undefined;
    let createdOverlay = false;
    try {
      createdOverlay = await this.prepareOverlay(
        spec.persistent,
        goldenPath,
        paths.overlayPath,
        log,
      );
      // the VM's account owns its disk (QEMU opens it before dropping to that account)
      if (runAs) await fs.chown(paths.overlayPath, runAs.uid, runAs.gid);
      if (this.cgroups) {
        cgroup = this.cgroups.create(`${this.tag}.q.${desktopId}`, {
          ...template.limits,
          memoryMb: memoryLimitMb,
        });
        checkCgroupPaths(this.cgroups.procsFiles(cgroup));
      }
      const cpus =
        accel === 'kvm'
          ? this.kvmCpuLearned
            ? [this.kvmCpuLearned]
            : this.kvmCpuCandidates
          : [undefined];
      let pid: number | undefined;
      for (const [i, cpu] of cpus.entries()) {
        const args = await this.buildArgs({
          desktopId,
          template,
          kernel,
          initrd,
          accel,
          cpu,
          // a per-desktop account has no passwd entry: QEMU takes "uid:gid"
          runAs: runAs ? (ownAccount ? `${runAs.uid}:${runAs.gid}` : runAs.user) : undefined,
          ...paths,
        });
        try {
          pid = await this.startQemu(desktopId, args, paths, log, cgroup);
          if (cpu !== undefined) this.kvmCpuLearned = cpu;
          break;
        } catch (err) {
          const next = cpus[i + 1];
          // Nested hypervisors may refuse some MSRs of `-cpu host` (QEMU aborts with
          // "failed to set MSR"); a model without them still runs with KVM.
          if (
            next === undefined ||
            !(err instanceof ProviderError) ||
            !/failed to set MSR/.test(err.message)
          )
            throw err;
          log.warn(
            { desktopId, cpu, next },
            'KVM rejected this CPU model; retrying with the next one',
          );
        }
      }
      if (pid === undefined) throw new ProviderError('QEMU_START_FAILED', 'QEMU did not start');
      const stat = await readProcStat(pid);
      if (!stat)
        throw new ProviderError('QEMU_START_FAILED', `QEMU process ${pid} vanished while starting`);
      const handle: QemuHandle = {
        desktopId,
        pid,
        startTime: stat.startTime,
        ...paths,
        goldenPath,
        accel,
        memoryMb: template.memoryMb,
        vcpus: template.vcpus,
        ...(runAs ? { runAs, ownAccount } : {}),
        ...(cgroup ? { cgroup, limits: template.limits, memoryLimitMb } : {}),
      };
      log.info(
        {
          desktopId,
          pid,
          accel: accel.toUpperCase(),
          ...(noKvm ? { noKvm } : {}),
          cpu: accel === 'kvm' ? this.kvmCpuLearned : 'default',
          memoryMb: template.memoryMb,
          vcpus: template.vcpus,
          runAs: runAs?.user,
          reusedDisk: !createdOverlay,
        },
        `qemu desktop started with ${accel === 'kvm' ? 'KVM' : 'TCG (software emulation)'}`,
      );
      return { ...handle };
    } catch (err) {
      if (createdOverlay) await fs.rm(paths.overlayPath, { force: true });
      if (cgroup && this.cgroups) await this.cgroups.remove(cgroup).catch(() => undefined);
      if (ownAccount) this.uids?.release(runAs.uid, desktopId);
      log.error({ desktopId, err }, 'qemu desktop failed to start');
      throw err;
    }
  }

  endpoint(handle: DesktopHandle): RfbEndpoint {
    return { kind: 'unix', path: parseHandle(handle).vncPath };
  }

  async health(handle: DesktopHandle): Promise<DesktopHealth> {
    let h: QemuHandle;
    try {
      h = parseHandle(handle);
    } catch (err) {
      return { state: 'dead', reason: (err as Error).message };
    }
    const proc = await checkProcess(h);
    if (!proc.alive) return { state: 'dead', reason: goneReason(h.pid, proc.why) };
    const busy = this.busy.get(h.desktopId);
    if (busy) return { state: 'paused', reason: busy };
    try {
      const status = await qmpExecute<{ status: string }>(h.qmpPath, 'query-status', undefined, {
        timeoutMs: this.healthTimeoutMs,
        commandTimeoutMs: this.healthTimeoutMs,
      });
      return (
        STATUS_HEALTH[status.status] ?? {
          state: 'unresponsive',
          reason: `unexpected VM status ${status.status}`,
        }
      );
    } catch (err) {
      if (err instanceof QmpError && err.code === 'QMP_CONNECT') {
        return { state: 'dead', reason: `QMP socket unreachable: ${err.message}` };
      }
      // The process state tells an admin why QMP is silent (T = stopped by a signal).
      const state = (await readProcStat(h.pid))?.state ?? '?';
      const why =
        err instanceof QmpError && err.code === 'QMP_TIMEOUT'
          ? `QMP did not answer within ${this.healthTimeoutMs} ms`
          : (err as Error).message;
      return {
        state: 'unresponsive',
        reason: `${why} (process state ${state}${state === 'T' ? ': stopped' : ''})`,
      };
    }
  }

  async destroy(
    handle: DesktopHandle,
    log: Logger,
    opts: { keepDisk?: boolean } = {},
  ): Promise<void> {
    const h = parseHandle(handle);
    await this.stopVm(h, log);
    if (h.cgroup && this.cgroups) await this.cgroups.remove(h.cgroup);
    if (h.runAs && h.ownAccount) this.uids?.release(h.runAs.uid, h.desktopId);
    for (const p of [h.qmpPath, h.vncPath, h.pidPath, h.logPath]) await fs.rm(p, { force: true });
    if (!opts.keepDisk) await fs.rm(h.overlayPath, { force: true });
    log.info(
      { desktopId: h.desktopId, keptDisk: Boolean(opts.keepDisk) },
      'qemu desktop destroyed',
    );
  }

  async powerAction(
    handle: DesktopHandle,
    action: 'reset' | 'powerdown' | 'stop' | 'cont',
  ): Promise<void> {
    const h = parseHandle(handle);
    await this.withQmp(h, CONTROL_TIMEOUT_MS, async (qmp) => {
      if (action === 'reset') {
        const before = await qmp.execute<{ status: string }>('query-status');
        await qmp.execute('system_reset');
        // After a guest power-off (-no-shutdown keeps QEMU) a reset leaves the VM in
        // prelaunch; an admin pressing reset expects it to boot.
        if (before.status === 'shutdown') await qmp.execute('cont');
        return;
      }
      const command = { powerdown: 'system_powerdown', stop: 'stop', cont: 'cont' } as const;
      await qmp.execute(command[action]);
    });
  }

  async snapshot(handle: DesktopHandle, name: string): Promise<void> {
    const h = parseHandle(handle);
    checkSnapshotName(name);
    await this.hmpSnapshotCommand(h, `savevm ${name}`, `saving snapshot ${name}`);
  }

  async restore(handle: DesktopHandle, name: string): Promise<void> {
    const h = parseHandle(handle);
    checkSnapshotName(name);
    if (!(await this.listSnapshots(handle)).includes(name)) {
      throw new ProviderError('QEMU_NO_SNAPSHOT', `desktop ${h.desktopId} has no snapshot ${name}`);
    }
    await this.hmpSnapshotCommand(h, `loadvm ${name}`, `restoring snapshot ${name}`);
  }

  async listSnapshots(handle: DesktopHandle): Promise<string[]> {
    const h = parseHandle(handle);
    const blocks = await this.withQmp(h, CONTROL_TIMEOUT_MS, (qmp) =>
      qmp.execute<
        Array<{ device?: string; inserted?: { image?: { snapshots?: Array<{ name: string }> } } }>
      >('query-block'),
    );
    const disk = blocks.find((b) => b.device === DISK_ID);
    return (disk?.inserted?.image?.snapshots ?? []).map((s) => s.name);
  }

  describe(handle: DesktopHandle): Record<string, string> {
    const h = parseHandle(handle);
    return {
      accel: h.accel === 'kvm' ? 'KVM' : 'TCG',
      memory: `${h.memoryMb} MiB`,
      vcpus: String(h.vcpus),
      ...(h.runAs ? { account: `${h.runAs.user} (uid ${h.runAs.uid})` } : {}),
    };
  }

  /** Deletes a stopped desktop's kept overlay (a dedicated desktop whose pool is gone). */
  async purge(desktopId: string): Promise<void> {
    if (!DESKTOP_ID.test(desktopId))
      throw new ProviderError('QEMU_BAD_ID', `bad desktop id ${JSON.stringify(desktopId)}`);
    const paths = this.pathsFor(desktopId);
    await this.refuseIfRunning(desktopId, paths);
    await fs.rm(paths.overlayPath, { force: true });
  }

  /**
   * Start-up reconciliation: stops QEMU processes that use this provider's run directory
   * but match none of the known handles (the server died before recording them).
   */
  async sweep(known: DesktopHandle[], log: Logger): Promise<number> {
    const knownPids = new Set<string>();
    for (const k of known) {
      const parsed = Handle.safeParse(k);
      if (parsed.success) knownPids.add(`${parsed.data.pid}:${parsed.data.startTime}`);
    }
    const prefix = `unix:${optValue(this.runDir + path.sep)}`;
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
      // its sockets and pid file; the disk stays (it may be a dedicated desktop's)
      const id = /([A-Za-z0-9_.-]+)\.qmp(?:,|$)/.exec(qmpArg.slice(prefix.length))?.[1];
      if (id !== undefined && DESKTOP_ID.test(id)) {
        const paths = this.pathsFor(id);
        for (const p of [paths.qmpPath, paths.vncPath, paths.pidPath])
          await fs.rm(p, { force: true });
      }
      removed++;
    }
    if (this.cgroups) {
      const knownCgroups = new Set<string>();
      for (const k of known) {
        const parsed = Handle.safeParse(k);
        for (const d of parsed.success ? (parsed.data.cgroup?.dirs ?? []) : []) knownCgroups.add(d);
      }
      for (const ref of this.cgroups.list(`${this.tag}.q.`)) {
        if (ref.dirs.some((d) => knownCgroups.has(d))) continue;
        await this.cgroups.remove(ref);
        log.warn({ cgroup: ref.dirs[0] }, 'removed a VM cgroup no record accounts for');
      }
    }
    if (this.uids) {
      const ids = new Set<string>();
      for (const k of known) {
        const parsed = Handle.safeParse(k);
        if (parsed.success) ids.add(parsed.data.desktopId);
      }
      this.uids.reclaim(ids);
    }
    return removed;
  }

  // ---- internals -------------------------------------------------------------------------

  private pathsFor(desktopId: string): Paths {
    const run = (ext: string) => path.join(this.runDir, `${desktopId}.${ext}`);
    return {
      qmpPath: run('qmp'),
      vncPath: run('vnc'),
      pidPath: run('pid'),
      logPath: run('log'),
      overlayPath: path.join(this.dirs.dataDir, 'qemu', `${desktopId}.qcow2`),
    };
  }

  private async ensureDirs(): Promise<void> {
    // Sockets live in a 0700 directory of our own: only the server may reach them
    // (DESIGN.md decision 1). The run dir itself is shared with other providers (Xvnc
    // keeps it traversable for its desktop user), so its mode is left alone.
    await fs.mkdir(this.runDir, { recursive: true, mode: 0o700 });
    const st = await fs.stat(this.runDir);
    if ((st.mode & 0o077) !== 0) await fs.chmod(this.runDir, 0o700);
    await fs.mkdir(path.join(this.dirs.dataDir, 'qemu'), { recursive: true, mode: 0o700 });
  }

  /** Which accelerator to use, and why not KVM when it is TCG. */
  private async resolveAccel(): Promise<{ accel: QemuAccel; why?: string }> {
    if (this.accelOption === 'tcg') return { accel: 'tcg', why: 'TCG was asked for' };
    const opens = await this.kvmOpens();
    if (this.accelOption === 'kvm') {
      // asked for explicitly: the admin knows whether the guest suits this KVM
      if (opens !== true)
        throw new ProviderError('QEMU_KVM_UNAVAILABLE', `KVM was asked for but ${opens}`);
      return { accel: 'kvm' };
    }
    if (opens !== true) return { accel: 'tcg', why: opens };
    const backend = await this.kvmBackend();
    if (backend !== true) return { accel: 'tcg', why: backend };
    return { accel: 'kvm' };
  }

  /** true, or why not: opening the device read-write is exactly what QEMU will do */
  private async kvmOpens(): Promise<true | string> {
    try {
      const fh = await fs.open(this.kvmDevice, 'r+');
      await fh.close();
      return true;
    } catch (err) {
      return `${this.kvmDevice} cannot be opened read-write (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
    }
  }

  /**
   * /dev/kvm is not always hardware virtualisation: PVM (kvm_pvm, used by some sandboxes
   * and nested clouds) runs only PVM-aware guest kernels, and a stock kernel hangs in its
   * decompressor there. Auto mode uses KVM only over kvm_intel or kvm_amd (built in or
   * loaded, both show in /sys/module).
   */
  private async kvmBackend(): Promise<true | string> {
    let modules: string[];
    try {
      modules = await fs.readdir('/sys/module');
    } catch {
      return true; // no sysfs to ask: trust the device
    }
    if (modules.includes('kvm_intel') || modules.includes('kvm_amd')) return true;
    const others = modules.filter((m) => m.startsWith('kvm_'));
    return `${this.kvmDevice} is not backed by kvm_intel or kvm_amd${others.length > 0 ? ` (found ${others.join(', ')})` : ''}; set accel 'kvm' to use it anyway`;
  }

  private async resolveRunAs(
    desktopId: string,
  ): Promise<{ user: string; uid: number; gid: number } | undefined> {
    if (this.runAsOption === null || process.getuid?.() !== 0) return undefined;
    if (this.uids) {
      const acct = this.uids.allocate(desktopId);
      return { user: acct.name, uid: acct.uid, gid: acct.gid };
    }
    const ids = await lookupUser(this.runAsOption);
    if (!ids) {
      throw new ProviderError(
        'QEMU_NO_USER',
        `user ${this.runAsOption} (runAs) does not exist; create it or set runAs: null`,
      );
    }
    if (ids.uid === 0) return undefined;
    return { user: this.runAsOption, ...ids };
  }

  /** QEMU 9.1 replaced `-runas user` with `-run-with user=`; ask this binary which it has. */
  private getRunAsFlag(): Promise<'-runas' | '-run-with'> {
    this.runAsFlag ??= execFileAsync(this.qemuBinary, ['-help'], { timeout: 10_000 }).then(
      ({ stdout }) => (/^-run-with\b.*user=/m.test(stdout) ? '-run-with' : '-runas'),
      () => '-runas' as const,
    );
    return this.runAsFlag;
  }

  private async buildArgs(
    o: {
      desktopId: string;
      template: QemuTemplate;
      kernel: string | undefined;
      initrd: string | undefined;
      accel: QemuAccel;
      cpu: string | undefined;
      runAs: string | undefined;
    } & Paths,
  ): Promise<string[]> {
    const args = [
      '-name',
      `vdi-${o.desktopId},process=vdi-${o.desktopId}`,
      '-no-user-config',
      '-nodefaults',
      '-machine',
      `q35,accel=${o.accel}`,
      ...(o.cpu !== undefined ? ['-cpu', o.cpu] : []),
      '-m',
      String(o.template.memoryMb),
      '-smp',
      String(o.template.vcpus),
      '-vga',
      'std',
      // Only the overlay is a drive; QEMU opens its backing file (the golden image) read-only.
      '-drive',
      `file=${optValue(o.overlayPath)},format=qcow2,if=virtio,id=${DISK_ID},cache=writeback,discard=unmap`,
      '-nic',
      'none',
      '-display',
      'none',
      '-vnc',
      `unix:${optValue(o.vncPath)}`,
      '-qmp',
      `unix:${optValue(o.qmpPath)},server=on,wait=off`,
      '-pidfile',
      o.pidPath,
      // a guest power-off leaves QEMU up (status "shutdown") so an admin can reset it
      '-no-shutdown',
      '-msg',
      'timestamp=on',
    ];
    if (o.kernel) args.push('-kernel', o.kernel);
    if (o.initrd) args.push('-initrd', o.initrd);
    if (o.template.append !== undefined) args.push('-append', o.template.append);
    if (o.runAs) {
      const flag = await this.getRunAsFlag();
      args.push(flag, flag === '-run-with' ? `user=${optValue(o.runAs)}` : o.runAs);
    }
    // without -runas nothing legitimately changes uid: deny that too
    args.push('-sandbox', o.runAs ? SECCOMP : `${SECCOMP},elevateprivileges=deny`);
    return args;
  }

  /** Returns true when it made a fresh overlay, false when it reused a kept one. */
  private async prepareOverlay(
    persistent: boolean,
    goldenPath: string,
    overlayPath: string,
    log: Logger,
  ): Promise<boolean> {
    if (persistent && (await exists(overlayPath))) {
      const info = await this.imageInfo(overlayPath);
      const backing = info['full-backing-filename'] ?? info['backing-filename'];
      if (backing !== goldenPath) {
        throw new ProviderError(
          'QEMU_OVERLAY_MISMATCH',
          `kept disk ${overlayPath} is based on ${String(backing)}, not on the pool's image ${goldenPath}; remove it to start afresh`,
        );
      }
      log.info({ overlayPath }, 'reusing the kept disk of a dedicated desktop');
      return false;
    }
    const tmp = `${overlayPath}.tmp`;
    await fs.rm(tmp, { force: true });
    await this.qemuImg(['create', '-q', '-f', 'qcow2', '-b', goldenPath, '-F', 'qcow2', tmp]);
    await fs.chmod(tmp, 0o600);
    // rename: a crash never leaves a half-made overlay under the real name
    await fs.rename(tmp, overlayPath);
    return true;
  }

  private async imageInfo(file: string): Promise<Record<string, unknown>> {
    // -U: read even while a QEMU holds the image's lock
    const stdout = await this.qemuImg(['info', '-U', '--output=json', file]);
    return JSON.parse(stdout) as Record<string, unknown>;
  }

  private async qemuImg(args: string[]): Promise<string> {
    try {
      const { stdout } = await execFileAsync(this.qemuImgBinary, args, {
        timeout: QEMU_IMG_TIMEOUT_MS,
      });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new ProviderError(
        'QEMU_IMG_FAILED',
        `qemu-img ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`,
      );
    }
  }

  /** A second QEMU on the same overlay and sockets would corrupt both. */
  private async refuseIfRunning(desktopId: string, paths: Paths): Promise<void> {
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

  /** Spawns QEMU and waits for its QMP and VNC sockets; on failure leaves nothing running. */
  private async startQemu(
    desktopId: string,
    args: string[],
    paths: Paths,
    log: Logger,
    cgroup?: CgroupRef,
  ): Promise<number> {
    for (const p of [paths.qmpPath, paths.vncPath, paths.pidPath]) await fs.rm(p, { force: true });
    const logFile = await fs.open(paths.logPath, 'w', 0o600);
    let child: ChildProcess;
    try {
      // Detached: own process group and session, so the VM survives the server and a
      // signal to the server's group does not reach it.
      // with a cgroup, a shell joins it first and then becomes QEMU (same pid)
      const [cmd, ...argv] =
        cgroup && this.cgroups
          ? joinCgroupsArgv(this.cgroups.procsFiles(cgroup), [this.qemuBinary, ...args])
          : [this.qemuBinary, ...args];
      child = spawn(cmd!, argv, {
        detached: true,
        stdio: ['ignore', logFile.fd, logFile.fd],
        cwd: this.runDir,
      });
    } finally {
      await logFile.close();
    }
    let exited: string | undefined;
    child.once('error', (err) => {
      exited = `could not start ${this.qemuBinary}: ${err.message}`;
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

  private async waitReady(
    child: ChildProcess,
    paths: Paths,
    exited: () => string | undefined,
  ): Promise<number> {
    const deadline = Date.now() + this.startTimeoutMs;
    let qmpUp = false;
    for (;;) {
      const why = exited();
      if (why) throw new ProviderError('QEMU_START_FAILED', why);
      if (child.pid === undefined)
        throw new ProviderError('QEMU_START_FAILED', `could not start ${this.qemuBinary}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ProviderError(
          'QEMU_START_TIMEOUT',
          `QEMU did not open its ${qmpUp ? 'VNC' : 'QMP'} socket within ${this.startTimeoutMs} ms`,
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

  private async stopVm(h: QemuHandle, log: Logger): Promise<void> {
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

  private async withQmp<T>(
    h: QemuHandle,
    timeoutMs: number,
    fn: (qmp: QmpClient) => Promise<T>,
  ): Promise<T> {
    const proc = await checkProcess(h);
    if (!proc.alive)
      throw new ProviderError(
        'QEMU_NOT_RUNNING',
        `desktop ${h.desktopId}: ${goneReason(h.pid, proc.why)}`,
      );
    const qmp = await QmpClient.connect(h.qmpPath, {
      timeoutMs: Math.min(timeoutMs, CONTROL_TIMEOUT_MS),
      commandTimeoutMs: timeoutMs,
    });
    try {
      return await fn(qmp);
    } finally {
      qmp.close();
    }
  }

  private async hmpSnapshotCommand(
    h: QemuHandle,
    commandLine: string,
    activity: string,
  ): Promise<void> {
    if (this.busy.has(h.desktopId)) {
      throw new ProviderError(
        'QEMU_BUSY',
        `desktop ${h.desktopId} is busy: ${this.busy.get(h.desktopId)}`,
      );
    }
    this.busy.set(h.desktopId, activity);
    try {
      // savevm/loadvm have no QMP form in every QEMU we support; HMP prints nothing on success
      const out = await this.withQmp(h, this.snapshotTimeoutMs, (qmp) =>
        qmp.execute<string>('human-monitor-command', { 'command-line': commandLine }),
      );
      if (typeof out === 'string' && /error/i.test(out)) {
        throw new ProviderError('QEMU_SNAPSHOT_FAILED', `${activity} failed: ${out.trim()}`);
      }
    } finally {
      this.busy.delete(h.desktopId);
    }
  }
}

function checkSnapshotName(name: string): void {
  if (!SNAPSHOT_NAME.test(name)) {
    throw new ProviderError(
      'QEMU_BAD_SNAPSHOT_NAME',
      `snapshot name ${JSON.stringify(name)}: letters, digits and . _ - only, up to 64`,
    );
  }
}

// ---- helpers for the admin console and tests -----------------------------------------------

export type ScreendumpFormat = 'ppm' | 'png';

/**
 * Saves the VM's screen to `file` with QMP `screendump`. PPM works on every QEMU; PNG
 * needs QEMU >= 7.1 built with libpng (and 7.2 swaps red and blue in PNGs, QEMU issue
 * 1622), so PPM is the default. QEMU writes the file itself, possibly as the unprivileged
 * VM user: it writes into a private temporary directory that user owns, then the image
 * is moved to `file`.
 */
export async function screendump(
  handle: DesktopHandle,
  file: string,
  opts: { format?: ScreendumpFormat; timeoutMs?: number } = {},
): Promise<void> {
  const h = parseHandle(handle);
  const format = opts.format ?? 'ppm';
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vdi-screendump-'));
  try {
    if (h.runAs) await fs.chown(dir, h.runAs.uid, h.runAs.gid);
    const tmp = path.join(dir, `screen.${format}`);
    const args: Record<string, unknown> = { filename: tmp };
    if (format !== 'ppm') args.format = format;
    const timeoutMs = opts.timeoutMs ?? CONTROL_TIMEOUT_MS;
    await qmpExecute(h.qmpPath, 'screendump', args, { timeoutMs, commandTimeoutMs: timeoutMs });
    const dest = path.resolve(file);
    try {
      await fs.rename(tmp, dest);
    } catch {
      await fs.copyFile(tmp, dest); // another file system
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

export interface PpmImage {
  width: number;
  height: number;
  /** width * height * 3 bytes, RGB, 8 bits per channel */
  rgb: Buffer;
}

/** Decodes a binary PPM (P6, maxval < 256) such as QEMU's screendump writes. */
export function parsePpm(data: Buffer): PpmImage {
  let pos = 0;
  const token = (): string => {
    for (;;) {
      while (pos < data.length && /\s/.test(String.fromCharCode(data[pos]!))) pos++;
      if (data[pos] !== 0x23) break; // '#' starts a comment up to the end of the line
      while (pos < data.length && data[pos] !== 0x0a) pos++;
    }
    const start = pos;
    while (pos < data.length && !/\s/.test(String.fromCharCode(data[pos]!))) pos++;
    return data.subarray(start, pos).toString('latin1');
  };
  const magic = token();
  const width = Number(token());
  const height = Number(token());
  const maxval = Number(token());
  pos++; // the single whitespace byte before the raster
  if (
    magic !== 'P6' ||
    !Number.isInteger(width) ||
    !Number.isInteger(height) ||
    width <= 0 ||
    height <= 0
  ) {
    throw new ProviderError('PPM_BAD', 'not a binary PPM (P6) image');
  }
  if (!(maxval > 0 && maxval < 256))
    throw new ProviderError('PPM_BAD', `unsupported PPM maxval ${maxval}`);
  const size = width * height * 3;
  if (data.length - pos < size) throw new ProviderError('PPM_BAD', 'PPM raster is truncated');
  return { width, height, rgb: data.subarray(pos, pos + size) };
}

/** QEMU key codes (QKeyCode) for the US layout; [code] or [shift, code]. */
const QCODES: Record<string, string[]> = (() => {
  const map: Record<string, string[]> = {
    ' ': ['spc'],
    '\n': ['ret'],
    '\t': ['tab'],
    '-': ['minus'],
    '=': ['equal'],
    '[': ['bracket_left'],
    ']': ['bracket_right'],
    '\\': ['backslash'],
    ';': ['semicolon'],
    "'": ['apostrophe'],
    '`': ['grave_accent'],
    ',': ['comma'],
    '.': ['dot'],
    '/': ['slash'],
  };
  const shifted: Record<string, string> = {
    '!': '1',
    '@': '2',
    '#': '3',
    $: '4',
    '%': '5',
    '^': '6',
    '&': '7',
    '*': '8',
    '(': '9',
    ')': '0',
    _: 'minus',
    '+': 'equal',
    '{': 'bracket_left',
    '}': 'bracket_right',
    '|': 'backslash',
    ':': 'semicolon',
    '"': 'apostrophe',
    '~': 'grave_accent',
    '<': 'comma',
    '>': 'dot',
    '?': 'slash',
  };
  for (const c of 'abcdefghijklmnopqrstuvwxyz0123456789') map[c] = [c];
  for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZ') map[c] = ['shift', c.toLowerCase()];
  for (const [c, key] of Object.entries(shifted)) map[c] = ['shift', key];
  return map;
})();

/**
 * Presses one key chord on the VM's emulated keyboard, e.g. ['ctrl', 'alt', 'delete'].
 * Key names are QEMU QKeyCode values.
 */
export async function sendKeys(
  handle: DesktopHandle,
  keys: string[],
  holdTimeMs?: number,
): Promise<void> {
  await typeChords(parseHandle(handle), [keys], holdTimeMs);
}

/**
 * Types printable ASCII text (and \n, \t) as US-layout key presses. QEMU holds each key
 * `holdTimeMs` (its default is 100 ms) and queues them in order.
 */
export async function typeText(
  handle: DesktopHandle,
  text: string,
  holdTimeMs?: number,
): Promise<void> {
  const chords = [...text].map((c) => {
    const chord = QCODES[c];
    if (!chord)
      throw new ProviderError(
        'QEMU_UNTYPEABLE',
        `cannot type ${JSON.stringify(c)} on a US keyboard`,
      );
    return chord;
  });
  await typeChords(parseHandle(handle), chords, holdTimeMs);
}

async function typeChords(h: QemuHandle, chords: string[][], holdTimeMs?: number): Promise<void> {
  const qmp = await QmpClient.connect(h.qmpPath, { timeoutMs: CONTROL_TIMEOUT_MS });
  try {
    // send-key queues the presses in QEMU's input queue and answers at once, in order
    for (const chord of chords) {
      const args: Record<string, unknown> = {
        keys: chord.map((data) => ({ type: 'qcode', data })),
      };
      if (holdTimeMs !== undefined) args['hold-time'] = holdTimeMs;
      await qmp.execute('send-key', args);
    }
  } finally {
    qmp.close();
  }
}
