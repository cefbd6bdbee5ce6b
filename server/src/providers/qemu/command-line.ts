/**
 * QEMU's command line for one desktop: a q35 machine with only the overlay as a drive, no
 * network card, VNC and QMP on unix sockets, the account to drop to, and a seccomp filter.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { QemuTemplate } from '@vdi/shared';
import type { QemuAccel } from './accelerator.js';
import type { VmPaths } from './handle.js';

const execFileAsync = promisify(execFile);

/** the drive id, also how query-block names the desktop's disk */
export const DISK_ID = 'disk0';
/** QEMU's descriptors of the overlay (read-write, read-only) and the fd set holding both */
export const DISK_FD_RW = 3;
export const DISK_FD_RO = 4;
const DISK_FDSET = 1;
/**
 * seccomp (`-sandbox on`): no obsolete syscalls, no spawning (fork/exec), no scheduler or
 * resource-limit changes. elevateprivileges stays allowed: QEMU itself calls setuid for
 * -runas after the filter is in place; once it runs as the desktop's account there is no
 * privilege to regain (and spawn=deny keeps it from executing setuid programs).
 */
const SECCOMP = 'on,obsolete=deny,spawn=deny,resourcecontrol=deny';

/** QEMU option values are comma-separated key=value lists: a literal comma is written twice. */
export function optValue(s: string): string {
  return s.replaceAll(',', ',,');
}

export interface VmCommand extends VmPaths {
  desktopId: string;
  template: QemuTemplate;
  kernel: string | undefined;
  initrd: string | undefined;
  accel: QemuAccel;
  /** `-cpu` model; undefined leaves QEMU's default */
  cpu: string | undefined;
  /** `uid:gid` or a user name to drop to; undefined keeps the server's account */
  runAs: string | undefined;
  /**
   * the destination of a move (migrate.ts): started with `-incoming defer`, it waits for
   * `migrate-incoming` before it runs anything
   */
  incoming?: boolean;
}

/** Builds command lines for one QEMU binary (asked once which run-as flag it has). */
export class QemuCommandLine {
  private runAsFlag: Promise<'-runas' | '-run-with'> | undefined;

  constructor(private readonly qemuBinary: string) {}

  async build(o: VmCommand): Promise<string[]> {
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
      // The overlay comes as descriptors the server opened (vm-process.ts), not as a path:
      // QEMU reopens it after dropping to the VM's account (a migration activates it), and
      // that account cannot reach the server's data directory.
      '-add-fd',
      `fd=${DISK_FD_RW},set=${DISK_FDSET}`,
      '-add-fd',
      `fd=${DISK_FD_RO},set=${DISK_FDSET}`,
      '-drive',
      `file=/dev/fdset/${DISK_FDSET},format=qcow2,if=virtio,id=${DISK_ID},cache=writeback,discard=unmap`,
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
    if (o.incoming) args.push('-incoming', 'defer');
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

  /** QEMU 9.1 replaced `-runas user` with `-run-with user=`; ask this binary which it has. */
  private getRunAsFlag(): Promise<'-runas' | '-run-with'> {
    this.runAsFlag ??= execFileAsync(this.qemuBinary, ['-help'], { timeout: 10_000 }).then(
      ({ stdout }) => (/^-run-with\b.*user=/m.test(stdout) ? '-run-with' : '-runas'),
      () => '-runas' as const,
    );
    return this.runAsFlag;
  }
}
