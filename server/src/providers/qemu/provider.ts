/**
 * QEMU virtual machines as desktops. Each desktop boots from its own qcow2 overlay (a
 * linked clone) on top of the pool's golden image, which is only ever opened read-only.
 * QEMU runs detached in its own process group with a private VNC unix socket (the
 * desktop's RFB endpoint) and a QMP unix socket (control), both in `<runDir>/qemu` (0700), so
 * it outlives the server and is found again from its handle (docs/architecture.md,
 * decision 2).
 *
 * This file is the Provider; its parts live beside it: the accelerator (accelerator.ts), the
 * command line (command-line.ts), the account QEMU drops to (run-as.ts), the disks
 * (overlays.ts), the process (vm-process.ts), QMP control of a running VM (control.ts, over
 * qmp-client.ts and qmp-wire.ts) and the handle (handle.ts). What stays (a little over the
 * house's ~400 lines) is the Provider interface itself, one method per lifecycle step.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { QemuTemplate } from '@vdi/shared';
import type { RfbEndpoint } from '../../rfb/endpoint.js';
import { readProcStat } from '../processes.js';
import { UidAllocator, type UidRange } from '../sandbox/accounts.js';
import { Cgroups, type CgroupRef } from '../sandbox/cgroups.js';
import { checkCgroupPaths } from '../sandbox/launch.js';
import {
  ProviderError,
  type CreateSpec,
  type DesktopHandle,
  type DesktopHealth,
  type MigrateSpec,
  type MigrationHooks,
  type MigrationOutcome,
  type Provider,
  type ProviderDirs,
  type ProviderStatus,
} from '../types.js';
import { chooseAccel, type QemuAccel } from './accelerator.js';
import { uffdPreload } from './postcopy.js';
import { QmpClient } from './qmp-client.js';
import { QemuCommandLine, type VmCommand } from './command-line.js';
import { VmControl, type PowerAction } from './control.js';
import {
  DESKTOP_ID,
  HOST_NAME,
  parseHandle,
  qemuHandles,
  vmPaths,
  type QemuHandle,
  type VmPaths,
} from './handle.js';
import {
  DEFAULT_MIGRATION,
  localMove,
  migrateVm,
  recoverSource,
  type MigrationSettings,
} from './migrate.js';
import { checkImages, Overlays } from './overlays.js';
import { RunAs, type VmAccount } from './run-as.js';
import { VmProcesses } from './vm-process.js';

const execFileAsync = promisify(execFile);

export interface QemuProviderOptions {
  /** @default 'qemu-system-x86_64' from PATH */
  qemuBinary?: string;
  /** @default 'qemu-img' from PATH */
  qemuImgBinary?: string;
  /** 'auto' uses KVM when /dev/kvm opens read-write, TCG (software emulation) otherwise @default 'auto' */
  accel?: 'auto' | QemuAccel;
  /**
   * When the server runs as root, QEMU drops to an account once it has opened its files
   * (`-runas`), so a compromised VM holds only the descriptors it was given. 'per-desktop':
   * each VM its own uid from `uidRange` (no passwd entry needed); a user name: that account for
   * every VM; null: never. @default 'per-desktop'
   */
  runAs?: string | null;
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
  /** the host this server runs its VMs on (config HOST_NAME) @default os.hostname() */
  hostName?: string;
  /** live migration: bandwidth, downtime, postcopy, timeout (migrate.ts) */
  migration?: Partial<MigrationSettings>;
}

const DEFAULT_START_TIMEOUT_MS = 30_000;
const DEFAULT_HEALTH_TIMEOUT_MS = 3_000;
const DEFAULT_SNAPSHOT_TIMEOUT_MS = 120_000;
/** sockaddr_un.sun_path holds 108 bytes including the terminating NUL */
const MAX_UNIX_PATH_BYTES = 107;
/**
 * QEMU's own memory beside the guest's RAM (TCG's translation cache, device emulation, the
 * VNC server's framebuffer copies), added when a pool leaves the VM's memory limit at 0
 */
const QEMU_OVERHEAD_MB = 512;

export class QemuProvider implements Provider {
  readonly kind = 'qemu' as const;
  private readonly qemuBinary: string;
  private readonly qemuImgBinary: string;
  private readonly accelOption: 'auto' | QemuAccel;
  private readonly kvmDevice: string;
  private readonly uids: UidAllocator | undefined;
  private readonly cgroups: Cgroups | undefined;
  /** prefix of this server's VM cgroup names */
  private readonly tag: string;
  private readonly kvmCpuCandidates: string[];
  /** the first KVM CPU model that started here, tried first from then on */
  private kvmCpuLearned: string | undefined;
  /** `<runDir>/qemu`: this provider's sockets, pid files and logs */
  private readonly runDir: string;
  private readonly runAs: RunAs;
  private readonly commandLine: QemuCommandLine;
  private readonly overlays: Overlays;
  private readonly processes: VmProcesses;
  private readonly control: VmControl;
  private readonly hostName: string;
  private readonly migration: MigrationSettings;

  constructor(
    private readonly dirs: ProviderDirs,
    opts: QemuProviderOptions = {},
  ) {
    this.runDir = path.join(dirs.runDir, 'qemu');
    this.qemuBinary = opts.qemuBinary ?? 'qemu-system-x86_64';
    this.qemuImgBinary = opts.qemuImgBinary ?? 'qemu-img';
    this.accelOption = opts.accel ?? 'auto';
    this.kvmDevice = opts.kvmDevice ?? '/dev/kvm';
    this.hostName = opts.hostName ?? os.hostname();
    this.migration = { ...DEFAULT_MIGRATION, ...opts.migration };
    const runAsOption = opts.runAs === undefined ? 'per-desktop' : opts.runAs;
    const root = process.getuid?.() === 0;
    this.tag = createHash('sha256').update(path.resolve(dirs.runDir)).digest('hex').slice(0, 8);
    if (root && runAsOption === 'per-desktop')
      this.uids = new UidAllocator(
        opts.uidRange ?? { base: 400_000, count: 1000 },
        path.resolve(dirs.runDir),
        'qemu',
        opts.uidLockDir,
      );
    const cg = root ? Cgroups.detect({ parent: opts.cgroupParent ?? 'vdi' }) : undefined;
    this.cgroups = typeof cg === 'object' ? cg : undefined;
    this.kvmCpuCandidates = opts.kvmCpu ? [opts.kvmCpu] : ['host', 'host,-arch-capabilities'];
    this.runAs = new RunAs(runAsOption, this.uids);
    this.commandLine = new QemuCommandLine(this.qemuBinary);
    this.overlays = new Overlays(this.qemuImgBinary);
    this.processes = new VmProcesses({
      qemuBinary: this.qemuBinary,
      runDir: this.runDir,
      startTimeoutMs: opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS,
      cgroups: this.cgroups,
      pathsFor: (id) => this.pathsFor(id),
    });
    this.control = new VmControl(
      opts.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS,
      opts.snapshotTimeoutMs ?? DEFAULT_SNAPSHOT_TIMEOUT_MS,
    );
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
      const chosen = await chooseAccel(this.accelOption, this.kvmDevice);
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
    await checkImages(goldenPath, kernel, initrd, log);

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
    await this.processes.refuseIfRunning(desktopId, paths);

    const { accel, why: noKvm } = await chooseAccel(this.accelOption, this.kvmDevice);
    const runAs = await this.runAs.resolve(desktopId);
    const ownAccount = runAs !== undefined && this.runAs.perDesktop;
    const memoryLimitMb =
      template.limits.memoryMb > 0
        ? template.limits.memoryMb
        : template.memoryMb + QEMU_OVERHEAD_MB;
    let cgroup: CgroupRef | undefined;
    let createdOverlay = false;
    try {
      createdOverlay = await this.overlays.prepare(
        spec.persistent,
        goldenPath,
        paths.overlayPath,
        log,
      );
      // the VM's account owns its disk (QEMU opens it before dropping to that account)
      if (runAs) await fs.chown(paths.overlayPath, runAs.uid, runAs.gid);
      if (this.cgroups) {
        cgroup = this.cgroups.create(this.cgroupName(desktopId, undefined), {
          ...template.limits,
          memoryMb: memoryLimitMb,
        });
        checkCgroupPaths(this.cgroups.procsFiles(cgroup));
      }
      const pid = await this.boot(
        { desktopId, template, kernel, initrd, accel, ...paths },
        runAs && { ...runAs, own: ownAccount },
        log,
        cgroup,
      );
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
    return this.control.health(h);
  }

  async destroy(
    handle: DesktopHandle,
    log: Logger,
    opts: { keepDisk?: boolean } = {},
  ): Promise<void> {
    const h = parseHandle(handle);
    await this.processes.stop(h, log);
    if (h.cgroup && this.cgroups) await this.cgroups.remove(h.cgroup);
    if (h.runAs && h.ownAccount) this.uids?.release(h.runAs.uid, h.desktopId);
    for (const p of [h.qmpPath, h.vncPath, h.pidPath, h.logPath]) await fs.rm(p, { force: true });
    if (!opts.keepDisk) await fs.rm(h.overlayPath, { force: true });
    log.info(
      { desktopId: h.desktopId, keptDisk: Boolean(opts.keepDisk) },
      'qemu desktop destroyed',
    );
  }

  abandonMove(handle: DesktopHandle): Promise<string[]> {
    return recoverSource(() => QmpClient.connect(parseHandle(handle).qmpPath));
  }

  powerAction(handle: DesktopHandle, action: PowerAction): Promise<void> {
    return this.control.power(parseHandle(handle), action);
  }

  snapshot(handle: DesktopHandle, name: string): Promise<void> {
    return this.control.snapshot(parseHandle(handle), name);
  }

  restore(handle: DesktopHandle, name: string): Promise<void> {
    return this.control.restore(parseHandle(handle), name);
  }

  listSnapshots(handle: DesktopHandle): Promise<string[]> {
    return this.control.listSnapshots(parseHandle(handle));
  }

  describe(handle: DesktopHandle): Record<string, string> {
    const h = parseHandle(handle);
    return {
      accel: h.accel === 'kvm' ? 'KVM' : 'TCG',
      memory: `${h.memoryMb} MiB`,
      vcpus: String(h.vcpus),
      host: h.host ?? this.hostName,
      ...(h.runAs ? { account: `${h.runAs.user} (uid ${h.runAs.uid})` } : {}),
    };
  }

  hostOf(handle: DesktopHandle): string {
    return parseHandle(handle).host ?? this.hostName;
  }

  /**
   * Moves a running VM to another host (migrate.ts): on this machine, a second QEMU process
   * under that host's name, with its own files, the same account, its own cgroup.
   */
  async migrate(
    handle: DesktopHandle,
    spec: MigrateSpec,
    log: Logger,
    hooks: MigrationHooks,
  ): Promise<MigrationOutcome> {
    const src = parseHandle(handle);
    const to = spec.destinationHost;
    if (!HOST_NAME.test(to))
      throw new ProviderError('QEMU_BAD_HOST', `bad host name ${JSON.stringify(to)}`);
    if (to === this.hostOf(src))
      throw new ProviderError('QEMU_SAME_HOST', `the desktop already runs on ${to}`);
    const template = QemuTemplate.parse(spec.template);
    const destPaths = this.pathsFor(src.desktopId, to);
    await this.ensureDirs(to);
    await this.processes.refuseIfRunning(src.desktopId, destPaths);
    const socketDir = await this.migrationDir(src);
    return migrateVm(
      localMove(
        {
          source: src,
          destinationHost: to,
          destinationPaths: destPaths,
          socketDir,
        },
        {
          createOverlay: async (golden, overlayPath) => {
            await fs.rm(overlayPath, { force: true });
            await this.overlays.prepare(false, golden, overlayPath, log);
            if (src.runAs) await fs.chown(overlayPath, src.runAs.uid, src.runAs.gid);
          },
          startDestination: (paths) => this.startDestination(src, to, template, paths, log),
          removeVm: async (h, l) => {
            await this.processes.stop(h, l);
            if (h.cgroup && this.cgroups) await this.cgroups.remove(h.cgroup);
            for (const p of [h.qmpPath, h.vncPath, h.pidPath, h.logPath, h.overlayPath])
              await fs.rm(p, { force: true });
          },
        },
      ),
      this.migration,
      log,
      hooks,
    );
  }

  /** The destination of a move: the source's command line with `-incoming defer`. */
  private async startDestination(
    src: QemuHandle,
    host: string,
    template: QemuTemplate,
    paths: VmPaths,
    log: Logger,
  ): Promise<QemuHandle> {
    let cgroup: CgroupRef | undefined;
    try {
      if (this.cgroups && src.limits) {
        cgroup = this.cgroups.create(this.cgroupName(src.desktopId, host), {
          ...src.limits,
          memoryMb: src.memoryLimitMb ?? src.limits.memoryMb,
        });
        checkCgroupPaths(this.cgroups.procsFiles(cgroup));
      }
      const cpu =
        src.accel === 'kvm' ? (this.kvmCpuLearned ?? this.kvmCpuCandidates[0]) : undefined;
      const args = await this.commandLine.build({
        desktopId: src.desktopId,
        template,
        kernel: template.kernel ? path.resolve(template.kernel) : undefined,
        initrd: template.initrd ? path.resolve(template.initrd) : undefined,
        accel: src.accel,
        cpu,
        runAs: src.runAs
          ? src.ownAccount
            ? `${src.runAs.uid}:${src.runAs.gid}`
            : src.runAs.user
          : undefined,
        incoming: true,
        ...paths,
      });
      // postcopy: the destination pulls pages through a userfaultfd, which its account may
      // not create by itself (postcopy.ts)
      const env = this.migration.postcopy
        ? { LD_PRELOAD: await uffdPreload(path.join(this.dirs.dataDir, 'qemu', 'native')) }
        : undefined;
      const pid = await this.processes.start(src.desktopId, args, paths, log, cgroup, env);
      const stat = await readProcStat(pid);
      if (!stat)
        throw new ProviderError('QEMU_START_FAILED', `QEMU process ${pid} vanished while starting`);
      const { host: _from, cgroup: _cg, ...rest } = src;
      return {
        ...rest,
        ...paths,
        pid,
        startTime: stat.startTime,
        ...(host === this.hostName ? {} : { host }),
        ...(cgroup ? { cgroup } : {}),
      };
    } catch (err) {
      if (cgroup && this.cgroups) await this.cgroups.remove(cgroup).catch(() => undefined);
      throw err;
    }
  }

  /**
   * `<runDir>/qemu-migrate/<desktop>`: the move's sockets, where both QEMU processes reach
   * them after dropping to the VM's account (the provider's own run dir is the server's
   * alone). The parent may be traversed, not listed; the directory is the account's.
   */
  private async migrationDir(h: QemuHandle): Promise<string> {
    if (h.runAs) {
      // the VM's account walks through the run dir to its own (as the Xvnc provider's
      // desktops do): traversable, not listable
      const st = await fs.stat(this.dirs.runDir);
      if ((st.mode & 0o011) !== 0o011) await fs.chmod(this.dirs.runDir, (st.mode & 0o777) | 0o011);
    }
    const parent = path.join(this.dirs.runDir, 'qemu-migrate');
    await fs.mkdir(parent, { recursive: true, mode: 0o711 });
    await fs.chmod(parent, 0o711);
    const dir = path.join(parent, h.desktopId);
    await fs.rm(dir, { recursive: true, force: true });
    await fs.mkdir(dir, { mode: 0o700 });
    if (h.runAs) await fs.chown(dir, h.runAs.uid, h.runAs.gid);
    return dir;
  }

  private cgroupName(desktopId: string, host: string | undefined): string {
    const base = `${this.tag}.q.${desktopId}`;
    return host === undefined || host === this.hostName ? base : `${base}.h-${host}`;
  }

  /** Deletes a stopped desktop's kept overlay (a dedicated desktop whose pool is gone). */
  async purge(desktopId: string): Promise<void> {
    if (!DESKTOP_ID.test(desktopId))
      throw new ProviderError('QEMU_BAD_ID', `bad desktop id ${JSON.stringify(desktopId)}`);
    const paths = this.pathsFor(desktopId);
    await this.processes.refuseIfRunning(desktopId, paths);
    await fs.rm(paths.overlayPath, { force: true });
  }

  /**
   * Start-up reconciliation: stops QEMU processes that use this provider's run directory
   * but match none of the known handles (the server died before recording them), and
   * removes cgroups and accounts no known VM holds.
   */
  async sweep(known: DesktopHandle[], log: Logger): Promise<number> {
    const vms = qemuHandles(known);
    const removed = await this.processes.sweep(vms, log);
    if (this.cgroups) {
      const knownCgroups = new Set(vms.flatMap((h) => h.cgroup?.dirs ?? []));
      for (const ref of this.cgroups.list(`${this.tag}.q.`)) {
        if (ref.dirs.some((d) => knownCgroups.has(d))) continue;
        await this.cgroups.remove(ref);
        log.warn({ cgroup: ref.dirs[0] }, 'removed a VM cgroup no record accounts for');
      }
    }
    this.uids?.reclaim(new Set(vms.map((h) => h.desktopId)));
    return removed;
  }

  /** a desktop's files on a host (this provider's own host: the files without a host dir) */
  private pathsFor(desktopId: string, host?: string): VmPaths {
    const hostDir = host === undefined || host === this.hostName ? undefined : host;
    return vmPaths(this.runDir, this.dirs.dataDir, desktopId, hostDir);
  }

  private async ensureDirs(host?: string): Promise<void> {
    // Sockets live in a 0700 directory of our own: only the server may reach them
    // (docs/architecture.md, decision 1). The run dir itself is shared with other providers
    // (Xvnc keeps it traversable for its desktop user), so its mode is left alone.
    await fs.mkdir(this.runDir, { recursive: true, mode: 0o700 });
    const st = await fs.stat(this.runDir);
    if ((st.mode & 0o077) !== 0) await fs.chmod(this.runDir, 0o700);
    await fs.mkdir(path.join(this.dirs.dataDir, 'qemu'), { recursive: true, mode: 0o700 });
    if (host !== undefined && host !== this.hostName) {
      // another host's files, served from this machine: a directory of its own in each
      await fs.mkdir(path.join(this.runDir, `@${host}`), { recursive: true, mode: 0o700 });
      await fs.mkdir(path.join(this.dirs.dataDir, 'qemu', `@${host}`), {
        recursive: true,
        mode: 0o700,
      });
    }
  }

  /**
   * Starts QEMU; with KVM, with the first CPU model this host accepts (remembered for the
   * next VM). Returns QEMU's pid once its sockets answer.
   */
  private async boot(
    vm: Omit<VmCommand, 'cpu' | 'runAs'>,
    runAs: (VmAccount & { own: boolean }) | undefined,
    log: Logger,
    cgroup: CgroupRef | undefined,
  ): Promise<number> {
    const cpus =
      vm.accel === 'kvm'
        ? this.kvmCpuLearned
          ? [this.kvmCpuLearned]
          : this.kvmCpuCandidates
        : [undefined];
    const started = await this.processes.startFirst(
      cpus,
      (cpu) =>
        this.commandLine.build({
          ...vm,
          cpu,
          // a per-desktop account has no passwd entry: QEMU takes "uid:gid"
          runAs: runAs ? (runAs.own ? `${runAs.uid}:${runAs.gid}` : runAs.user) : undefined,
        }),
      vm,
      log,
      cgroup,
    );
    if (started.cpu !== undefined) this.kvmCpuLearned = started.cpu;
    return started.pid;
  }
}
