/**
 * A running VM over QMP: its health (`query-status`, with the process state when QMP is
 * silent), an admin's power actions, and internal snapshots (savevm/loadvm), during which
 * QMP is blocked and the VM counts as busy rather than unresponsive.
 */
import type { DesktopHealth } from '../types.js';
import { ProviderError } from '../types.js';
import { checkProcess, readProcStat } from '../processes.js';
import { DISK_ID } from './command-line.js';
import type { QemuHandle } from './handle.js';
import { QmpClient, qmpExecute } from './qmp-client.js';
import { QmpError } from './qmp-wire.js';

/** QMP budget for short control commands (power actions, quit, query-block) */
export const CONTROL_TIMEOUT_MS = 10_000;
/** snapshot names go into an HMP command line: no spaces or quotes, ever */
const SNAPSHOT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export type PowerAction = 'reset' | 'powerdown' | 'stop' | 'cont';

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

export class VmControl {
  /** desktops with a savevm/loadvm in flight here: QMP is blocked meanwhile, not dead */
  private readonly busy = new Map<string, string>();

  constructor(
    /** QMP answer budget for health(), ms; longer means unresponsive */
    private readonly healthTimeoutMs: number,
    /** budget for savevm/loadvm, which copy the guest's RAM, ms */
    private readonly snapshotTimeoutMs: number,
  ) {}

  async health(h: QemuHandle): Promise<DesktopHealth> {
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

  async power(h: QemuHandle, action: PowerAction): Promise<void> {
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

  async snapshot(h: QemuHandle, name: string): Promise<void> {
    checkSnapshotName(name);
    await this.hmpSnapshotCommand(h, `savevm ${name}`, `saving snapshot ${name}`);
  }

  async restore(h: QemuHandle, name: string): Promise<void> {
    checkSnapshotName(name);
    if (!(await this.listSnapshots(h)).includes(name)) {
      throw new ProviderError('QEMU_NO_SNAPSHOT', `desktop ${h.desktopId} has no snapshot ${name}`);
    }
    await this.hmpSnapshotCommand(h, `loadvm ${name}`, `restoring snapshot ${name}`);
  }

  async listSnapshots(h: QemuHandle): Promise<string[]> {
    const blocks = await this.withQmp(h, CONTROL_TIMEOUT_MS, (qmp) =>
      qmp.execute<
        Array<{ device?: string; inserted?: { image?: { snapshots?: Array<{ name: string }> } } }>
      >('query-block'),
    );
    const disk = blocks.find((b) => b.device === DISK_ID);
    return (disk?.inserted?.image?.snapshots ?? []).map((s) => s.name);
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

function checkSnapshotName(name: string): void {
  if (!SNAPSHOT_NAME.test(name)) {
    throw new ProviderError(
      'QEMU_BAD_SNAPSHOT_NAME',
      `snapshot name ${JSON.stringify(name)}: letters, digits and . _ - only, up to 64`,
    );
  }
}
