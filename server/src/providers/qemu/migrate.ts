/**
 * Live migration of a running VM to another host (issue 12): here, another QEMU process on
 * this machine under that host's name, with its own files.
 *
 * The disk. The golden image is storage every host sees (the pool's image, read-only); the
 * desktop's overlay is not. It moves with an NBD mirror, not with QEMU's block migration:
 * the destination exports its (empty, same-backing) overlay over NBD (`block-export-add`),
 * the source mirrors only the overlay's own clusters into it (`drive-mirror`, sync=top)
 * while the guest runs, and RAM is sent only once the mirror is in sync. Block migration
 * (the `block` capability) is deprecated since QEMU 8.2 and gone in 9.1, copies the disk
 * inside the RAM stream (so its dirty tracking competes with RAM's for the downtime), and
 * cannot be cancelled apart from the RAM; the mirror is what libvirt does, survives a QEMU
 * upgrade, and fails on its own before any RAM is sent.
 *
 * The switch. `pause-before-switchover` stops the migration once the source is paused and
 * before the destination gets the device state: the mirror is ended there
 * (`block-job-cancel` on a job in sync leaves the destination an exact copy, and nothing
 * writes any more), then `migrate-continue`. So nothing written during the move is lost.
 *
 * Capabilities, chosen: `events` (MIGRATION and MIGRATION_PASS events instead of polling),
 * `pause-before-switchover` (above), `postcopy-ram` only when asked for (a guest that
 * dirties memory faster than the link: the destination runs first and pulls pages, but a
 * failure after the switch then loses the VM, so it is off by default). Not
 * `zero-blocks` (a block-migration option) nor compression (CPU-bound under TCG, where the
 * vCPU already takes a core). Parameters: `max-bandwidth` (QEMU's default, 128 MiB/s,
 * would make a 256 MiB guest take seconds on a loopback link) and `downtime-limit`.
 *
 * Failure at any step: the migration and mirror are cancelled, a source that was running
 * runs again (QEMU resumes it; `cont` if it does not), and the destination is killed and
 * its files removed.
 *
 * The steps are the same whatever the hosts are; a `MovePlan` says how to reach each side.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { DesktopHandle, MigrationHooks, MigrationOutcome, MoveDestination } from '../types.js';
import { ProviderError } from '../types.js';
import { DISK_ID } from './command-line.js';
import type { QemuHandle, VmPaths } from './handle.js';
import { QmpClient } from './qmp-client.js';
import { QmpEvents } from './qmp-events.js';
import type { QmpEvent } from './qmp-wire.js';

export interface MigrationSettings {
  /** `max-bandwidth`, bytes per second */
  maxBandwidthBytes: number;
  /** `downtime-limit`: the pause QEMU aims for at the switch, ms */
  downtimeLimitMs: number;
  /** enable `postcopy-ram` and switch to postcopy after the first pass */
  postcopy: boolean;
  /** the whole move, from starting the destination to the switch, ms */
  timeoutMs: number;
}

export const DEFAULT_MIGRATION: MigrationSettings = {
  maxBandwidthBytes: 1024 * 1024 * 1024,
  downtimeLimitMs: 300,
  postcopy: false,
  timeoutMs: 180_000,
};

/** the block job and NBD export of a move */
const JOB_ID = 'vdi-move';
const EXPORT_NAME = DISK_ID;
/** QMP budget for one command of the move */
const COMMAND_MS = 15_000;

/**
 * One move's two sides as the steps below see them. Two kinds of host make one: processes on
 * this machine under another host's name (`localMove`), and QEMU in containers on two
 * members of an LXD cluster (providers/lxd/vm-move.ts), where the two sides share no file
 * system and every socket is reached through LXD's exec relays.
 */
export interface MovePlan {
  desktopId: string;
  from: string | undefined;
  to: string;
  /** QMP of the running source */
  sourceQmp(): Promise<QmpClient>;
  /**
   * Start the destination waiting for the state (`-incoming defer`), on an empty overlay of
   * the same golden image; its QMP.
   */
  startDestination(): Promise<QmpClient>;
  /** where the destination listens for the state and the disk (paths it sees) */
  readonly listen: MoveSockets;
  /**
   * Make the destination's sockets reachable from the source, once they listen; the paths
   * the source connects to.
   */
  link(): Promise<MoveSockets>;
  /** the destination's display and handle, once it runs */
  destination(): MoveDestination;
  /** The move stands: remove the source and what `link` made; the destination's handle. */
  finish(log: Logger): Promise<DesktopHandle>;
  /** The move failed: remove the destination and what `link` made. */
  abandon(log: Logger): Promise<void>;
}

export interface MoveSockets {
  /** the migration stream's unix socket */
  state: string;
  /** the NBD server's unix socket (the disk mirror) */
  disk: string;
}

/** what the QEMU provider does for a move on this machine: start, stop, make disks */
export interface MigrationDeps {
  /** a fresh overlay on `golden` at `overlayPath`, owned by the VM's account */
  createOverlay(golden: string, overlayPath: string): Promise<void>;
  /** start the destination QEMU (-incoming defer) on these files; its handle */
  startDestination(paths: VmPaths): Promise<QemuHandle>;
  /** stop a VM, remove its files and cgroup (the account stays: the other side uses it) */
  removeVm(h: QemuHandle, log: Logger): Promise<void>;
}

export interface MigrationJob {
  source: QemuHandle;
  destinationHost: string;
  destinationPaths: VmPaths;
  /** a directory the VM's account owns, for the migration and NBD sockets */
  socketDir: string;
}

/** A move between two QEMU processes on this machine: both sides see the same sockets. */
export function localMove(job: MigrationJob, deps: MigrationDeps): MovePlan {
  const { source: src } = job;
  const sockets = {
    state: path.join(job.socketDir, 'state.sock'),
    disk: path.join(job.socketDir, 'disk.sock'),
  };
  let dest: QemuHandle | undefined;
  return {
    desktopId: src.desktopId,
    from: src.host,
    to: job.destinationHost,
    sourceQmp: () => QmpClient.connect(src.qmpPath, { commandTimeoutMs: COMMAND_MS }),
    async startDestination() {
      await deps.createOverlay(src.goldenPath, job.destinationPaths.overlayPath);
      dest = await deps.startDestination(job.destinationPaths);
      return QmpClient.connect(dest.qmpPath, { commandTimeoutMs: COMMAND_MS });
    },
    listen: sockets,
    link: () => Promise.resolve(sockets),
    destination() {
      if (!dest) throw new Error('the destination is not started');
      return { endpoint: { kind: 'unix', path: dest.vncPath }, handle: { ...dest } };
    },
    async finish(log) {
      if (!dest) throw new Error('the destination is not started');
      await deps
        .removeVm(src, log)
        .catch((err: unknown) => log.error({ err }, 'the source VM could not be cleaned up'));
      await fs.rm(job.socketDir, { recursive: true, force: true }).catch(() => undefined);
      return { ...dest };
    },
    async abandon(log) {
      if (dest) await deps.removeVm(dest, log).catch(() => undefined);
      await fs.rm(job.destinationPaths.overlayPath, { force: true });
      await fs.rm(job.socketDir, { recursive: true, force: true });
    },
  };
}

type Step =
  | 'preparing'
  | 'starting the destination'
  | 'copying the disk'
  | 'opening the destination display'
  | 'streaming memory'
  | 'switching over'
  | 'finishing';

export async function migrateVm(
  plan: MovePlan,
  settings: MigrationSettings,
  log: Logger,
  hooks: MigrationHooks,
): Promise<MigrationOutcome> {
  const t0 = Date.now();
  const deadline = t0 + settings.timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  let step: Step = 'preparing';
  let srcQmp: QmpClient | undefined;
  let destQmp: QmpClient | undefined;
  let srcEvents: QmpEvents | undefined;
  let mirroring = false;
  let migrating = false;
  let wasRunning = false;
  let switched = false;
  const times = { setupMs: 0, mirrorMs: 0, migrateMs: 0, postcopyMs: 0 };
  /** when the destination began to run in postcopy (0: not yet, or no postcopy) */
  let postcopyAt = 0;
  try {
    srcQmp = await plan.sourceQmp();
    srcEvents = new QmpEvents(srcQmp, 'the source');
    const status = await srcQmp.execute<{ status: string }>('query-status');
    wasRunning = status.status === 'running';
    if (!wasRunning && status.status !== 'paused') {
      throw new ProviderError(
        'QEMU_MIGRATE_REFUSED',
        `the VM is ${status.status}; only a running or paused VM moves`,
      );
    }

    step = 'starting the destination';
    destQmp = await plan.startDestination();
    const destEvents = new QmpEvents(destQmp, 'the destination');
    const caps = capabilities(settings);
    // both sides agree on postcopy; pause-before-switchover is the source's alone
    await destQmp.execute('migrate-set-capabilities', {
      capabilities: caps.filter((c) => c.capability !== 'pause-before-switchover'),
    });
    await destQmp.execute('migrate-incoming', { uri: `unix:${plan.listen.state}` });
    await destQmp.execute('nbd-server-start', {
      addr: { type: 'unix', data: { path: plan.listen.disk } },
    });
    await destQmp.execute('block-export-add', {
      type: 'nbd',
      id: JOB_ID,
      'node-name': await diskNode(destQmp),
      name: EXPORT_NAME,
      writable: true,
    });
    const reach = await plan.link();
    times.setupMs = Date.now() - t0;

    step = 'copying the disk';
    const mirrorAt = Date.now();
    await srcQmp.execute('drive-mirror', {
      'job-id': JOB_ID,
      device: DISK_ID,
      target: `nbd+unix:///${EXPORT_NAME}?socket=${reach.disk}`,
      format: 'raw',
      // only the overlay's own clusters: the golden image is on both hosts
      sync: 'top',
      mode: 'existing',
    });
    mirroring = true;
    const ready = await srcEvents.next(
      (e) => isJobEvent(e, ['BLOCK_JOB_READY', 'BLOCK_JOB_COMPLETED', 'BLOCK_JOB_ERROR']),
      left(),
      'disk mirror in sync',
    );
    if (ready.event !== 'BLOCK_JOB_READY') throw new Error(`disk mirror ended: ${jobError(ready)}`);
    times.mirrorMs = Date.now() - mirrorAt;

    step = 'opening the destination display';
    await hooks.destinationReady?.(plan.destination());

    step = 'streaming memory';
    await srcQmp.execute('migrate-set-capabilities', { capabilities: caps });
    await srcQmp.execute('migrate-set-parameters', {
      'max-bandwidth': settings.maxBandwidthBytes,
      'downtime-limit': settings.downtimeLimitMs,
    });
    // the source may pause any moment once the state flows, and a paused VM drops input
    await hooks.holdInput?.();
    const migrateAt = Date.now();
    await srcQmp.execute('migrate', { uri: `unix:${reach.state}` });
    migrating = true;
    let postcopyStarted = false;
    for (;;) {
      const e = await srcEvents.next(
        (ev) =>
          ev.event === 'MIGRATION' ||
          (settings.postcopy && !postcopyStarted && ev.event === 'MIGRATION_PASS') ||
          isJobEvent(ev, ['BLOCK_JOB_COMPLETED', 'BLOCK_JOB_ERROR']),
        left(),
        'end of the migration',
      );
      if (e.event === 'MIGRATION_PASS') {
        postcopyStarted = true;
        await srcQmp.execute('migrate-start-postcopy');
        continue;
      }
      if (e.event !== 'MIGRATION') {
        if (e.event === 'BLOCK_JOB_ERROR' && e.data?.action !== 'stop') continue;
        throw new Error(`the disk mirror broke: ${jobError(e)}`);
      }
      const st = String(e.data?.status);
      if (st === 'pre-switchover') {
        step = 'switching over';
        // the source is paused: end the mirror in sync, then let the device state go
        await srcQmp.execute('block-job-cancel', { device: JOB_ID });
        const done = await srcEvents.next(
          (ev) => isJobEvent(ev, ['BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED']),
          left(),
          'end of the disk mirror',
        );
        if (done.event !== 'BLOCK_JOB_COMPLETED' || done.data?.error !== undefined)
          throw new Error(`the disk mirror did not complete: ${jobError(done)}`);
        mirroring = false;
        await srcQmp.execute('migrate-continue', { state: 'pre-switchover' });
      } else if (st === 'postcopy-active') {
        postcopyAt = Date.now();
      } else if (st === 'completed') {
        if (postcopyAt > 0) times.postcopyMs = Date.now() - postcopyAt;
        break;
      } else if (st === 'failed' || st === 'cancelled') {
        const desc = await srcQmp
          .execute<{ 'error-desc'?: string }>('query-migrate')
          .then((i) => i['error-desc'])
          .catch(() => undefined);
        throw new Error(`migration ${st}${desc ? `: ${desc}` : ''}`);
      }
    }
    times.migrateMs = Date.now() - migrateAt;

    step = 'finishing';
    const info = await srcQmp.execute<{
      downtime?: number;
      ram?: { transferred?: number };
    }>('query-migrate');
    // the destination resumes by itself when the source was running (no -S)
    if (wasRunning) {
      const st = await destQmp.execute<{ status: string }>('query-status');
      if (st.status !== 'running') {
        await destEvents
          .next((e) => e.event === 'RESUME', Math.min(left(), 10_000), 'resume')
          .catch(async () => {
            await destQmp!.execute('cont');
          });
      }
    }
    // from here on the move stands: the destination runs the guest, the source is stale,
    // and what fails now is left over, never undone
    switched = true;
    await hooks
      .switchedOver?.()
      .catch((err: unknown) => log.warn({ err }, 'viewers did not take the destination display'));
    await destQmp.execute('block-export-del', { id: JOB_ID }).catch(() => undefined);
    await destQmp.execute('nbd-server-stop').catch(() => undefined);
    destEvents.stop();
    destQmp.close();
    srcEvents.stop();
    srcQmp.close();
    const handle = await plan.finish(log);
    const stats = {
      totalMs: Date.now() - t0,
      downtimeMs: info.downtime ?? 0,
      ...times,
      ramBytes: info.ram?.transferred ?? 0,
    };
    log.info(
      { desktopId: plan.desktopId, from: plan.from, to: plan.to, ...stats },
      'qemu desktop moved',
    );
    return { handle, stats };
  } catch (err) {
    if (switched) throw err;
    const why = (err as Error).message;
    log.error(
      { desktopId: plan.desktopId, to: plan.to, step, err },
      'qemu desktop move failed; it stays where it was',
    );
    if (postcopyAt > 0) {
      // The destination ran the guest with part of its memory still at the source: neither
      // side holds the whole guest now, and the source must not run again on stale memory
      // and a disk that missed the destination's writes. Left paused for an operator.
      log.error(
        { desktopId: plan.desktopId, to: plan.to, err },
        'postcopy failed after the switch: the VM is lost (the source stays paused)',
      );
      srcEvents?.stop();
      srcQmp?.close();
      destQmp?.close();
      await plan.abandon(log).catch(() => undefined);
      throw new ProviderError(
        'QEMU_MOVE_LOST',
        `postcopy failed after the destination began to run (${why}); the VM is lost, its source left paused`,
      );
    }
    if (srcQmp && !srcQmp.closed) {
      if (migrating) await srcQmp.execute('migrate_cancel').catch(() => undefined);
      if (mirroring)
        await srcQmp
          .execute('block-job-cancel', { device: JOB_ID, force: true })
          .catch(() => undefined);
      if (wasRunning) {
        // QEMU resumes a source whose migration failed; make sure of it
        const st = await srcQmp
          .execute<{ status: string }>('query-status')
          .catch(() => ({ status: 'unknown' }));
        if (st.status !== 'running')
          await srcQmp
            .execute('cont')
            .catch((e: unknown) => log.error({ err: e }, 'the source did not resume'));
      }
    }
    srcEvents?.stop();
    srcQmp?.close();
    destQmp?.close();
    await plan
      .abandon(log)
      .catch((e: unknown) => log.warn({ err: e }, 'the destination could not be cleaned up'));
    throw new ProviderError('QEMU_MIGRATE_FAILED', `moving the VM failed while ${step}: ${why}`);
  }
}

/** migration states in which QEMU still moves the VM (query-migrate `status`) */
const MOVING = new Set([
  'setup',
  'active',
  'pre-switchover',
  'device',
  'cancelling',
  'wait-unplug',
]);
/** how long a cancelled migration may take to stop */
const CANCEL_MS = 10_000;

/**
 * The server stopped in the middle of a move and finds the VM at its source (the
 * destination, which no record names, is swept): whatever QEMU still does of the move
 * alone (it carries on without the server: the RAM copy, the disk mirror, a pause before
 * the switch that nobody will end) is cancelled and the guest runs again. A migration that
 * completed leaves the source stopped with the whole guest: it runs on from there and the
 * destination's few seconds are dropped with it. Resolves with what was done; throws when
 * the VM cannot run again here (postcopy had begun: the guest's memory is split).
 */
export async function recoverSource(openQmp: () => Promise<QmpClient>): Promise<string[]> {
  const qmp = await openQmp();
  try {
    return await undoMove(qmp);
  } finally {
    qmp.close();
  }
}

async function undoMove(qmp: QmpClient): Promise<string[]> {
  const done: string[] = [];
  const status = async () =>
    (await qmp.execute<{ status?: string }>('query-migrate')).status ?? 'none';
  const st = await status();
  if (st.startsWith('postcopy'))
    throw new ProviderError(
      'QEMU_MOVE_LOST',
      `the move was in postcopy (${st}): the guest's memory is split between two hosts`,
    );
  if (MOVING.has(st)) {
    // a pause before the switch ends too: QEMU lets the waiting migration go on cancel
    await qmp.execute('migrate_cancel');
    done.push(`cancelled the migration (${st})`);
    const deadline = Date.now() + CANCEL_MS;
    while (MOVING.has(await status()) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
  }
  const jobs = await qmp.execute<Array<{ device: string }>>('query-block-jobs');
  if (jobs.some((j) => j.device === JOB_ID)) {
    await qmp.execute('block-job-cancel', { device: JOB_ID, force: true });
    done.push('cancelled the disk mirror');
  }
  const run = await qmp.execute<{ status: string }>('query-status');
  if (['finish-migrate', 'postmigrate', 'paused'].includes(run.status)) {
    await qmp.execute('cont');
    done.push(`resumed the guest (${run.status})`);
  }
  return done;
}

function capabilities(s: MigrationSettings): Array<{ capability: string; state: boolean }> {
  return [
    { capability: 'events', state: true },
    { capability: 'pause-before-switchover', state: true },
    ...(s.postcopy ? [{ capability: 'postcopy-ram', state: true }] : []),
  ];
}

function isJobEvent(e: QmpEvent, names: string[]): boolean {
  return names.includes(e.event) && e.data?.device === JOB_ID;
}

function jobError(e: QmpEvent): string {
  const error = e.data?.error;
  return typeof error === 'string' ? error : e.event;
}

/** the node name of the desktop's disk (its format node), which the NBD export serves */
async function diskNode(qmp: QmpClient): Promise<string> {
  const blocks =
    await qmp.execute<Array<{ device?: string; inserted?: { 'node-name'?: string } }>>(
      'query-block',
    );
  const node = blocks.find((b) => b.device === DISK_ID)?.inserted?.['node-name'];
  if (!node) throw new Error(`the destination has no ${DISK_ID} drive`);
  return node;
}
