import { randomUUID } from 'node:crypto';
import type { PowerAction } from '@vdi/shared';
import type { DesktopRow, PoolRow } from '../store/schema.js';
import { jsonColumn } from '../store/rows.js';
import type { DesktopHandle } from '../providers/types.js';
import type { Actor } from './actor.js';
import { BrokerPart, type BrokerContext } from './context.js';
import { BrokerError } from './errors.js';
import { ClusterMutex } from './keyed-mutex.js';
import type { BrokerQueries, RunningDesktop } from './queries.js';
import type { Hosts } from './hosts.js';

/**
 * Desktops through their providers: start, provision, stop, restart in place. Whatever
 * changes a running desktop happens here, under that desktop's lock, so a log-off, a reset
 * and a health clean-up never act on one desktop at once.
 */
export class Desktops extends BrokerPart {
  private readonly poolLock: ClusterMutex;
  private readonly desktopLock: ClusterMutex;
  /** desktops being restarted in place (admin reset): health checks leave them alone */
  private readonly restarting = new Set<string>();
  /** desktops being moved to another host (migration.ts): the host each goes to */
  readonly moving = new Map<string, string>();

  constructor(
    ctx: BrokerContext,
    private readonly queries: BrokerQueries,
    private readonly hosts: Hosts,
  ) {
    super(ctx);
    // cluster-wide: a node's count-and-add or log-off is not interleaved with another's
    this.poolLock = new ClusterMutex(ctx.lock, 'pool');
    this.desktopLock = new ClusterMutex(ctx.lock, 'desktop');
  }

  /**
   * Hold this node's lease on a desktop's in-flight work while `fn` runs, renewed every third
   * of its length (decision 11): other nodes' health checks and reconciliations leave a leased
   * desktop alone, and take over (clean up) once a lease has run out because its node died.
   * `keep`: the lease stays after `fn` (the caller ends it with endLease).
   */
  async withLease<T>(desktopId: string, fn: () => Promise<T>, keep = false): Promise<T> {
    const renew = () =>
      this.db
        .updateTable('desktops')
        .set({ lease_node: this.node.id, lease_until: this.leaseUntil() })
        .where('id', '=', desktopId)
        .execute();
    await renew();
    const timer = setInterval(
      () => void renew().catch((err: unknown) => this.log.warn({ err }, 'lease renewal failed')),
      Math.max(100, Math.floor(this.node.leaseMs / 3)),
    );
    timer.unref();
    try {
      return await fn();
    } finally {
      clearInterval(timer);
      if (!keep) await this.endLease(desktopId);
    }
  }

  /** End this node's lease on a desktop (its in-flight work is done). */
  async endLease(desktopId: string): Promise<void> {
    await this.db
      .updateTable('desktops')
      .set({ lease_node: null, lease_until: null })
      .where('id', '=', desktopId)
      .where('lease_node', '=', this.node.id)
      .execute();
  }

  /** Run `fn` alone for this desktop (against other changes to the same desktop). */
  withDesktop<T>(desktopId: string, fn: () => Promise<T>): Promise<T> {
    return this.desktopLock.run(desktopId, fn);
  }

  /** Run `fn` alone for this pool: counting its desktops and adding one is one step. */
  withPool<T>(poolId: string, fn: () => Promise<T>): Promise<T> {
    return this.poolLock.run(poolId, fn);
  }

  /**
   * A desktop that is moving to another host takes no other change until the move ends
   * (its one owner is the move): 409 MIGRATING, saying what was refused.
   */
  refuseIfMoving(desktopId: string, what: string): void {
    const to = this.moving.get(desktopId);
    if (to !== undefined)
      throw new BrokerError(
        'MIGRATING',
        `the desktop is being moved to host ${to}: ${what} is not possible until the move ends`,
        409,
      );
  }

  /**
   * Is this desktop being restarted in place by this node (its link and health are expected
   * to fail)? Other nodes see the restart's lease on the row instead.
   */
  isRestarting(desktopId: string): boolean {
    return this.restarting.has(desktopId);
  }

  async count(poolId: string): Promise<number> {
    const r = await this.db
      .selectFrom('desktops')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('pool_id', '=', poolId)
      .where('state', '<>', 'failed')
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  private async nextSlot(pool: PoolRow): Promise<number | null> {
    if (pool.provider !== 'vnc') return null;
    const used = await this.db
      .selectFrom('desktops')
      .select('slot')
      .where('pool_id', '=', pool.id)
      .execute();
    const taken = new Set(used.map((u) => u.slot));
    const hosts = (pool.template as { hosts?: unknown[] }).hosts ?? [];
    for (let i = 0; i < hosts.length; i++) if (!taken.has(i)) return i;
    throw new BrokerError('POOL_FULL', `pool "${pool.name}" has no free machine`);
  }

  /**
   * Start a desktop. `again`: a kept desktop started again (a dedicated desktop after its
   * log-off) stays where its disk is, so no placement (a drained or full host must not refuse
   * its own stopped desktop).
   */
  async start(
    pool: PoolRow,
    d: DesktopRow,
    forUser?: string,
    again = false,
  ): Promise<DesktopHandle> {
    const provider = this.provider(pool.provider);
    // providers with several hosts (an LXD cluster): the placement policy picks one
    // (recorded on the row, where every node's next placement counts it)
    const host = again ? undefined : await this.hosts.place(pool, d.id, forUser ?? d.owner_user_id);
    return provider.create(
      {
        desktopId: d.id,
        poolId: pool.id,
        template: pool.template,
        persistent: pool.assignment === 'dedicated',
        ...(d.slot !== null ? { slot: d.slot } : {}),
        ...(host !== undefined ? { host } : {}),
      },
      this.log.child({ desktopId: d.id }),
    );
  }

  /**
   * Insert a desktop row first (so a crash mid-start leaves a trace reconciliation can clean),
   * start it, then record its handle. On failure nothing is left behind.
   */
  async provision(
    pool: PoolRow,
    o: {
      owner: string | null;
      state: 'in-use' | 'ready';
      keepLease?: boolean;
      /** the user it is started for (placement sends them back to their host) */
      forUser?: string;
    },
  ): Promise<DesktopRow> {
    return this.startReserved(pool, await this.reserve(pool, o.owner), o);
  }

  /**
   * The first half of provision: the row, in 'provisioning' under this node's lease. It counts
   * towards the pool's size at once, so a caller holding the pool's lock (which must not be
   * held for the seconds a start takes: every Connect of the pool, on every node, waits on it)
   * reserves under it and starts after letting go.
   */
  async reserve(pool: PoolRow, owner: string | null): Promise<DesktopRow> {
    const id = randomUUID();
    const now = this.nowIso();
    const slot = await this.nextSlot(pool);
    const row: DesktopRow = {
      id,
      pool_id: pool.id,
      name: `${pool.name}-${id.slice(0, 6)}`,
      state: 'provisioning',
      owner_user_id: owner,
      handle: null,
      slot,
      error: null,
      created_at: now,
      state_since: now,
      // started on this node's host, under this node's lease until it is handed out
      host: this.node.host,
      lease_node: this.node.id,
      lease_until: this.leaseUntil(),
      member: null,
    };
    await this.db
      .insertInto('desktops')
      .values({ ...row, handle: null })
      .execute();
    return row;
  }

  /** The second half of provision: start a reserved desktop; on failure its row goes. */
  async startReserved(
    pool: PoolRow,
    row: DesktopRow,
    o: {
      state: 'in-use' | 'ready';
      keepLease?: boolean;
      /** the user it is started for (placement sends them back to their host) */
      forUser?: string;
    },
  ): Promise<DesktopRow> {
    const id = row.id;
    try {
      const handle = await this.withLease(
        id,
        async () => {
          const handle = await this.start(pool, row, o.forUser);
          await this.db
            .updateTable('desktops')
            .set({ handle: jsonColumn(handle), state: o.state, state_since: this.nowIso() })
            .where('id', '=', id)
            .execute();
          return handle;
        },
        o.keepLease,
      );
      this.log.info({ desktopId: id, pool: pool.name }, 'desktop provisioned');
      return { ...row, handle, state: o.state };
    } catch (e) {
      await this.db.deleteFrom('desktops').where('id', '=', id).execute();
      this.log.error({ err: e, pool: pool.name }, 'desktop provisioning failed');
      // the broker's own refusals (no host may take it) keep their code
      if (e instanceof BrokerError) throw e;
      const msg = (e as Error).message.split('\n')[0] ?? 'unknown error';
      throw new BrokerError('DESKTOP_START_FAILED', `a desktop could not be started: ${msg}`, 503);
    }
  }

  async setState(id: string, state: DesktopRow['state']): Promise<void> {
    await this.db
      .updateTable('desktops')
      .set({ state, state_since: this.nowIso() })
      .where('id', '=', id)
      .execute();
  }

  async release(desktopId: string, pool: PoolRow, reason: string): Promise<void> {
    await this.desktopLock.run(desktopId, async () => {
      const d = await this.queries.desktop(desktopId);
      if (!d) return;
      const log = this.log.child({ desktopId });
      if (
        d.handle &&
        d.host !== null &&
        !this.node.served.includes(d.host) &&
        HOST_LOCAL.has(pool.provider)
      ) {
        // its processes are on another host: that host's tick stops it (decision 11)
        await this.setState(d.id, 'stopping');
        log.info({ reason, host: d.host }, 'desktop release handed to its host');
        return;
      }
      const provider = this.provider(pool.provider);
      const handle = d.handle;
      await this.setState(d.id, 'stopping');
      try {
        if (handle)
          await provider.destroy(handle, log, { keepDisk: pool.assignment === 'dedicated' });
      } catch (err) {
        log.error({ err }, 'desktop stop failed');
      }
      if (pool.assignment === 'dedicated' && d.owner_user_id) {
        await this.db
          .updateTable('desktops')
          .set({ state: 'stopped', handle: null, state_since: this.nowIso() })
          .where('id', '=', d.id)
          .execute();
      } else {
        await this.db.deleteFrom('desktops').where('id', '=', d.id).execute();
      }
      log.info({ reason }, 'desktop released');
    });
  }

  /**
   * Admin "reset desktop": restart it in place (Xvnc) or power-reset it (VM). Resolves true
   * when it was restarted (its viewers must attach again), false for a VM's power reset.
   */
  async reset(desktopId: string): Promise<boolean> {
    this.refuseIfMoving(desktopId, 'a reset');
    return this.desktopLock.run(desktopId, async () => {
      const {
        desktop: d,
        pool,
        provider,
        handle,
      } = await this.queries.runningDesktop(desktopId, notRunning);
      if (provider.powerAction) {
        // A VM reboots behind the same VNC server: viewers stay attached and watch it boot.
        await provider.powerAction(handle, 'reset');
        return false;
      }
      // while it restarts, a lost connection or a failed health check is expected, not a loss
      // (on other nodes: the lease on its row)
      this.restarting.add(d.id);
      try {
        await this.withLease(d.id, async () => {
          this.emit('desktop-restarting', d.id);
          await provider.destroy(handle, this.log, { keepDisk: pool.assignment === 'dedicated' });
          const fresh = await this.start(pool, d);
          await this.db
            .updateTable('desktops')
            .set({ handle: jsonColumn(fresh), state_since: this.nowIso() })
            .where('id', '=', d.id)
            .execute();
        });
      } finally {
        this.restarting.delete(d.id);
      }
      return true;
    });
  }

  /** An administrator's power action on a VM (reset, powerdown, stop, cont). */
  power(desktopId: string, action: PowerAction, actor: Actor): Promise<void> {
    return this.act(
      desktopId,
      actor,
      `desktop.power.${action}`,
      undefined,
      ({ provider, handle }) => {
        if (!provider.powerAction)
          throw notSupported(`${provider.kind} desktops have no power actions`);
        return provider.powerAction(handle, action);
      },
    );
  }

  /** The snapshots of a VM. A read: it takes no lock, like a thumbnail. */
  async snapshots(desktopId: string): Promise<string[]> {
    const { provider, handle } = await this.queries.runningDesktop(desktopId);
    if (!provider.listSnapshots) throw noSnapshots(provider.kind);
    return provider.listSnapshots(handle);
  }

  /** Take a snapshot of a VM under its name. */
  snapshot(desktopId: string, name: string, actor: Actor): Promise<void> {
    return this.act(desktopId, actor, 'desktop.snapshot', { name }, ({ provider, handle }) => {
      if (!provider.snapshot) throw noSnapshots(provider.kind);
      return provider.snapshot(handle, name);
    });
  }

  /** Put a VM back to a snapshot. */
  restore(desktopId: string, name: string, actor: Actor): Promise<void> {
    return this.act(desktopId, actor, 'desktop.restore', { name }, ({ provider, handle }) => {
      if (!provider.restore) throw noSnapshots(provider.kind);
      return provider.restore(handle, name);
    });
  }

  /** An administrator's action on a running desktop: under its lock, then audited. */
  private async act(
    desktopId: string,
    actor: Actor,
    action: string,
    detail: unknown,
    run: (desktop: RunningDesktop) => Promise<void>,
  ): Promise<void> {
    this.refuseIfMoving(desktopId, action);
    await this.desktopLock.run(desktopId, async () =>
      run(await this.queries.runningDesktop(desktopId)),
    );
    await this.record(actor, action, desktopId, detail);
  }

  /**
   * Remove a desktop for good (its pool or its owner is being deleted): stop it, remove its
   * kept disk, drop its row. A failure to stop or purge is logged; the row goes regardless.
   */
  async purge(desktopId: string): Promise<void> {
    await this.desktopLock.run(desktopId, async () => {
      const d = await this.queries.desktop(desktopId);
      if (!d) return;
      // a desktop of a pool that is gone has no provider to ask (reconciliation removes such
      // records too): only its row is left to drop
      const pool = await this.queries.pool(d.pool_id).catch(() => undefined);
      if (pool) {
        const provider = this.provider(pool.provider);
        const log = this.log.child({ desktopId });
        if (d.handle) {
          await provider
            .destroy(d.handle, log, { keepDisk: false })
            .catch((err: unknown) => log.error({ err }, 'destroy failed'));
        }
        await provider
          .purge?.(desktopId)
          .catch((err: unknown) => log.error({ err }, 'purge failed'));
      }
      await this.db.deleteFrom('desktops').where('id', '=', desktopId).execute();
    });
  }

  /** Remove every desktop of a pool that is being deleted (see purge). */
  async purgePool(poolId: string): Promise<void> {
    const rows = await this.db
      .selectFrom('desktops')
      .select('id')
      .where('pool_id', '=', poolId)
      .execute();
    for (const d of rows) await this.purge(d.id);
    // one a tick was starting while the pool was being drained
    await this.db.deleteFrom('desktops').where('pool_id', '=', poolId).execute();
  }
}

/** providers whose desktops are processes of the host that started them (not reachable elsewhere) */
const HOST_LOCAL = new Set(['xvnc', 'qemu']);

/** a reset finds the session's desktop not running: the same answer whether its row is there */
const notRunning = () => new BrokerError('DESKTOP_NOT_RUNNING', 'the desktop is not running', 409);
const notSupported = (message: string) => new BrokerError('NOT_SUPPORTED', message, 409);
const noSnapshots = (kind: string) => notSupported(`${kind} desktops have no snapshots`);
