import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { MyDesktop, SessionInfo } from '@vdi/shared';
import type { Clock } from '../clock.js';
import type { Db } from '../store/db.js';
import type { DesktopRow, PoolRow, SessionRow } from '../store/schema.js';
import type { DesktopHandle, Provider } from '../providers/types.js';
import type { RfbEndpoint } from '../rfb/endpoint.js';
import { AuditLog } from '../audit/audit-log.js';
import { BrokerError } from './errors.js';
import { KeyedMutex } from './keyed-mutex.js';

export interface BrokerEvents {
  /** a session ended: close its viewers and tell them why */
  'session-ended': [sessionId: string, reason: string];
  /** close a session's viewers (admin disconnect); the session stays alive */
  'session-disconnect': [sessionId: string];
  /** a desktop's health changed: tell its viewers */
  'desktop-health': [
    desktopId: string,
    state: 'running' | 'unresponsive' | 'paused' | 'dead',
    reason?: string,
  ];
  /** a desktop is about to be stopped and started again in place: viewers let go and re-attach */
  'desktop-restarting': [desktopId: string];
  /** a desktop was reset or restarted in place */
  'desktop-restarted': [desktopId: string];
}

export interface Actor {
  id: string | null;
  name: string | null;
  ip?: string | null;
}

export const SYSTEM: Actor = { id: null, name: 'system' };

export interface AttachInfo {
  session: SessionRow;
  desktop: DesktopRow;
  pool: PoolRow;
  endpoint: RfbEndpoint;
}

const LIVE = ['starting', 'active', 'disconnected'] as const;

/**
 * Pools, assignment and the session lifecycle (active → disconnected → ended), desktop
 * provisioning through the providers, timeouts and warm spares on a periodic tick, and
 * start-up reconciliation. The store is the source of truth; this class keeps no state that a
 * restart would lose except in-flight locks.
 */
export class Broker extends EventEmitter<BrokerEvents> {
  private readonly userPoolLock = new KeyedMutex();
  private readonly poolLock = new KeyedMutex();
  private readonly desktopLock = new KeyedMutex();
  private timer: NodeJS.Timeout | undefined;
  /** the tick in progress, and at most one queued behind it (see tick()) */
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private lastHealthCheck = 0;
  private stopped = false;
  /** desktops being restarted in place (admin reset): health checks leave them alone */
  private readonly restarting = new Set<string>();
  readonly audit: AuditLog;

  constructor(
    private readonly db: Db,
    private readonly providers: Map<string, Provider>,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly opts: { tickMs: number; healthEveryMs?: number },
  ) {
    super();
    this.audit = new AuditLog(db, clock, log);
  }

  private nowIso(): string {
    return new Date(this.clock.now()).toISOString();
  }

  provider(kind: string): Provider {
    const p = this.providers.get(kind);
    if (!p)
      throw new BrokerError(
        'PROVIDER_UNAVAILABLE',
        `provider ${kind} is not available on this server`,
        503,
      );
    return p;
  }

  // ------------------------------------------------------------------ queries

  async pool(poolId: string): Promise<PoolRow> {
    const pool = await this.db
      .selectFrom('pools')
      .selectAll()
      .where('id', '=', poolId)
      .executeTakeFirst();
    if (!pool) throw new BrokerError('NOT_FOUND', 'no such pool', 404);
    return pool;
  }

  async isEntitled(userId: string, poolId: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('entitlements as e')
      .select('e.id')
      .where('e.pool_id', '=', poolId)
      .where((eb) =>
        eb.or([
          eb.and([eb('e.principal_type', '=', 'user'), eb('e.principal_id', '=', userId)]),
          eb.and([
            eb('e.principal_type', '=', 'group'),
            eb(
              'e.principal_id',
              'in',
              eb.selectFrom('group_members').select('group_id').where('user_id', '=', userId),
            ),
          ]),
        ]),
      )
      .executeTakeFirst();
    return row !== undefined;
  }

  async entitledPools(userId: string): Promise<PoolRow[]> {
    const groups = this.db
      .selectFrom('group_members')
      .select('group_id')
      .where('user_id', '=', userId);
    const poolIds = this.db
      .selectFrom('entitlements as e')
      .select('e.pool_id')
      .where((eb) =>
        eb.or([
          eb.and([eb('e.principal_type', '=', 'user'), eb('e.principal_id', '=', userId)]),
          eb.and([eb('e.principal_type', '=', 'group'), eb('e.principal_id', 'in', groups)]),
        ]),
      );
    return this.db
      .selectFrom('pools')
      .selectAll()
      .where('id', 'in', poolIds)
      .orderBy('name')
      .execute();
  }

  /** Session rows joined with names, as the API shows them. */
  async sessionInfos(filter: {
    userId?: string;
    states?: readonly string[];
    sessionId?: string;
  }): Promise<SessionInfo[]> {
    let q = this.db
      .selectFrom('sessions as s')
      .innerJoin('users as u', 'u.id', 's.user_id')
      .innerJoin('pools as p', 'p.id', 's.pool_id')
      .leftJoin('desktops as d', 'd.id', 's.desktop_id')
      .select([
        's.id',
        's.user_id',
        'u.username',
        's.pool_id',
        'p.name as pool_name',
        's.desktop_id',
        'd.name as desktop_name',
        's.state',
        's.created_at',
        's.state_since',
        's.ended_reason',
      ]);
    if (filter.userId) q = q.where('s.user_id', '=', filter.userId);
    if (filter.sessionId) q = q.where('s.id', '=', filter.sessionId);
    if (filter.states?.length) q = q.where('s.state', 'in', filter.states as SessionRow['state'][]);
    const rows = await q.orderBy('s.created_at', 'desc').limit(1000).execute();
    return rows.map((r) => ({
      id: r.id,
      userId: r.user_id,
      username: r.username,
      poolId: r.pool_id,
      poolName: r.pool_name,
      desktopId: r.desktop_id,
      desktopName: r.desktop_name ?? '(gone)',
      state: r.state,
      createdAt: r.created_at,
      stateSince: r.state_since,
      endedReason: r.ended_reason,
    }));
  }

  async myDesktops(userId: string): Promise<MyDesktop[]> {
    const pools = await this.entitledPools(userId);
    const sessions = await this.sessionInfos({ userId, states: LIVE });
    return pools.map((p) => ({
      poolId: p.id,
      poolName: p.name,
      description: p.description,
      provider: p.provider,
      assignment: p.assignment,
      draining: p.draining === 1,
      sessions: sessions.filter((s) => s.poolId === p.id),
    }));
  }

  async session(sessionId: string): Promise<SessionRow | undefined> {
    return this.db
      .selectFrom('sessions')
      .selectAll()
      .where('id', '=', sessionId)
      .executeTakeFirst();
  }

  async desktop(desktopId: string): Promise<DesktopRow | undefined> {
    return this.db
      .selectFrom('desktops')
      .selectAll()
      .where('id', '=', desktopId)
      .executeTakeFirst();
  }

  // --------------------------------------------------------------- assignment

  /**
   * Connect: the user's existing session in the pool, else their dedicated desktop, else a
   * warm spare, else a new desktop below max, else POOL_FULL with nothing half-created.
   */
  async connect(
    actor: Actor & { id: string },
    poolId: string,
    opts: { newSession?: boolean } = {},
  ): Promise<{ sessionId: string; desktopId: string; resumed: boolean }> {
    const userId = actor.id;
    return this.userPoolLock.run(`${userId}:${poolId}`, async () => {
      const pool = await this.pool(poolId);
      if (!(await this.isEntitled(userId, poolId))) {
        throw new BrokerError('NOT_ENTITLED', 'you are not entitled to this pool', 403);
      }
      const live = await this.db
        .selectFrom('sessions')
        .selectAll()
        .where('user_id', '=', userId)
        .where('pool_id', '=', poolId)
        .where('state', 'in', LIVE)
        .orderBy('created_at', 'desc')
        .execute();
      const existing = live[0];
      if (opts.newSession && live.length >= pool.max_per_user) {
        throw new BrokerError(
          'MAX_SESSIONS',
          `you already have ${live.length} session(s) in "${pool.name}", the most this pool allows`,
        );
      }
      if (existing && !opts.newSession) {
        await this.audit.record({
          actor: actor.name,
          action: 'session.resume',
          target: existing.id,
          ip: actor.ip ?? null,
          detail: { poolId },
        });
        return { sessionId: existing.id, desktopId: existing.desktop_id, resumed: true };
      }
      if (pool.draining)
        throw new BrokerError(
          'POOL_DRAINING',
          `pool "${pool.name}" is draining and takes no new sessions`,
        );
      const desktop = await this.assignDesktop(pool, userId);
      const now = this.nowIso();
      const sessionId = randomUUID();
      try {
        await this.db
          .insertInto('sessions')
          .values({
            id: sessionId,
            user_id: userId,
            pool_id: poolId,
            desktop_id: desktop.id,
            state: 'starting',
            created_at: now,
            state_since: now,
            last_input_at: now,
            ended_at: null,
            ended_reason: null,
          })
          .execute();
      } catch (e) {
        // should not happen (the desktop was claimed for us); give it back rather than leak it
        await this.releaseDesktop(desktop.id, pool, 'session insert failed');
        throw e;
      }
      await this.audit.record({
        actor: actor.name,
        action: 'session.start',
        target: sessionId,
        ip: actor.ip ?? null,
        detail: { poolId, pool: pool.name, desktopId: desktop.id },
      });
      this.log.info({ sessionId, userId, poolId, desktopId: desktop.id }, 'session started');
      return { sessionId, desktopId: desktop.id, resumed: false };
    });
  }

  private async assignDesktop(pool: PoolRow, userId: string): Promise<DesktopRow> {
    if (pool.assignment === 'dedicated') {
      const own = await this.db
        .selectFrom('desktops')
        .selectAll()
        .where('pool_id', '=', pool.id)
        .where('owner_user_id', '=', userId)
        .where('state', '<>', 'failed')
        .executeTakeFirst();
      // the owner's desktop in any state: a user never gets a second one while theirs stops
      if (own) return this.claimOwned(pool, own);
    }
    // a warm spare: the conditional update is what makes two racers unable to share one
    for (let attempt = 0; attempt < 5; attempt++) {
      const spare = await this.db
        .selectFrom('desktops')
        .selectAll()
        .where('pool_id', '=', pool.id)
        .where('state', '=', 'ready')
        .where('owner_user_id', 'is', null)
        .orderBy('created_at')
        .executeTakeFirst();
      if (!spare) break;
      const claimed = await this.db
        .updateTable('desktops')
        .set({
          state: 'in-use',
          state_since: this.nowIso(),
          owner_user_id: pool.assignment === 'dedicated' ? userId : null,
        })
        .where('id', '=', spare.id)
        .where('state', '=', 'ready')
        .where('owner_user_id', 'is', null)
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) === 1) {
        // a spare may have died while it waited; do not hand out a dead desktop
        const handle = spare.handle ? (JSON.parse(spare.handle) as DesktopHandle) : undefined;
        const health = handle
          ? await this.provider(pool.provider).health(handle)
          : { state: 'dead' as const };
        if (health.state === 'running') return { ...spare, state: 'in-use' };
        await this.cleanupDesktop(spare, pool, 'spare found dead at assignment');
      }
    }
    return this.poolLock.run(pool.id, async () => {
      const total = await this.countDesktops(pool.id);
      if (total >= pool.max_size) {
        throw new BrokerError(
          'POOL_FULL',
          `pool "${pool.name}" is full (${pool.max_size} desktops); try again later`,
        );
      }
      return this.provisionDesktop(pool, {
        owner: pool.assignment === 'dedicated' ? userId : null,
        state: 'in-use',
      });
    });
  }

  private async claimOwned(pool: PoolRow, own: DesktopRow): Promise<DesktopRow> {
    return this.desktopLock.run(own.id, async () => {
      const fresh = await this.desktop(own.id);
      if (!fresh) throw new BrokerError('DESKTOP_GONE', 'your desktop was removed; try again', 409);
      if (fresh.state === 'ready') {
        await this.setDesktopState(fresh.id, 'in-use');
        return { ...fresh, state: 'in-use' };
      }
      // still being stopped by a log-off that has not taken this lock yet
      if (fresh.state !== 'stopped') {
        throw new BrokerError(
          'DESKTOP_BUSY',
          'your desktop is being stopped; try again in a moment',
          409,
        );
      }
      // stopped: start it again from its kept disk
      await this.setDesktopState(fresh.id, 'provisioning');
      try {
        const handle = await this.startDesktop(pool, fresh);
        await this.db
          .updateTable('desktops')
          .set({
            handle: JSON.stringify(handle),
            state: 'in-use',
            state_since: this.nowIso(),
            error: null,
          })
          .where('id', '=', fresh.id)
          .execute();
        return { ...fresh, handle: JSON.stringify(handle), state: 'in-use' };
      } catch (e) {
        await this.db
          .updateTable('desktops')
          .set({
            state: 'stopped',
            error: (e as Error).message.slice(0, 2000),
            state_since: this.nowIso(),
          })
          .where('id', '=', fresh.id)
          .execute();
        throw new BrokerError(
          'DESKTOP_START_FAILED',
          `your desktop could not be started: ${(e as Error).message.split('\n')[0]}`,
          503,
        );
      }
    });
  }

  private async countDesktops(poolId: string): Promise<number> {
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
    const hosts = (JSON.parse(pool.template) as { hosts?: unknown[] }).hosts ?? [];
    for (let i = 0; i < hosts.length; i++) if (!taken.has(i)) return i;
    throw new BrokerError('POOL_FULL', `pool "${pool.name}" has no free machine`);
  }

  private async startDesktop(pool: PoolRow, d: DesktopRow): Promise<DesktopHandle> {
    return this.provider(pool.provider).create(
      {
        desktopId: d.id,
        poolId: pool.id,
        template: JSON.parse(pool.template) as Record<string, unknown>,
        persistent: pool.assignment === 'dedicated',
        ...(d.slot !== null ? { slot: d.slot } : {}),
      },
      this.log.child({ desktopId: d.id }),
    );
  }

  /**
   * Insert a desktop row first (so a crash mid-start leaves a trace reconciliation can clean),
   * start it, then record its handle. On failure nothing is left behind.
   */
  private async provisionDesktop(
    pool: PoolRow,
    o: { owner: string | null; state: 'in-use' | 'ready' },
  ): Promise<DesktopRow> {
    const id = randomUUID();
    const now = this.nowIso();
    const slot = await this.nextSlot(pool);
    const row: DesktopRow = {
      id,
      pool_id: pool.id,
      name: `${pool.name}-${id.slice(0, 6)}`,
      state: 'provisioning',
      owner_user_id: o.owner,
      handle: null,
      slot,
      error: null,
      created_at: now,
      state_since: now,
    };
    await this.db.insertInto('desktops').values(row).execute();
    try {
      const handle = await this.startDesktop(pool, row);
      await this.db
        .updateTable('desktops')
        .set({ handle: JSON.stringify(handle), state: o.state, state_since: this.nowIso() })
        .where('id', '=', id)
        .execute();
      this.log.info({ desktopId: id, pool: pool.name }, 'desktop provisioned');
      return { ...row, handle: JSON.stringify(handle), state: o.state };
    } catch (e) {
      await this.db.deleteFrom('desktops').where('id', '=', id).execute();
      this.log.error({ err: e, pool: pool.name }, 'desktop provisioning failed');
      const msg = (e as Error).message.split('\n')[0] ?? 'unknown error';
      throw new BrokerError('DESKTOP_START_FAILED', `a desktop could not be started: ${msg}`, 503);
    }
  }

  private async setDesktopState(id: string, state: DesktopRow['state']): Promise<void> {
    await this.db
      .updateTable('desktops')
      .set({ state, state_since: this.nowIso() })
      .where('id', '=', id)
      .execute();
  }

  // ---------------------------------------------------------------- lifecycle

  /** The gateway asks whether this user may view this session, and where its desktop is. */
  async attachInfo(
    sessionId: string,
    user: { id: string; role: string },
    shadow: boolean,
  ): Promise<AttachInfo> {
    const session = await this.session(sessionId);
    if (!session) throw new BrokerError('SESSION_NOT_FOUND', 'no such session', 404);
    if (shadow ? user.role !== 'admin' : session.user_id !== user.id) {
      throw new BrokerError(
        'FORBIDDEN',
        shadow ? 'only administrators can shadow sessions' : 'this is not your session',
        403,
      );
    }
    // a revoked entitlement stops re-attaching (the running session is left to its timeouts)
    if (!shadow && !(await this.isEntitled(user.id, session.pool_id))) {
      throw new BrokerError('NOT_ENTITLED', 'you are no longer entitled to this pool', 403);
    }
    if (session.state === 'ended') {
      throw new BrokerError(
        'SESSION_ENDED',
        `this session has ended (${session.ended_reason ?? 'logged off'})`,
        410,
      );
    }
    const desktop = await this.desktop(session.desktop_id);
    if (!desktop?.handle)
      throw new BrokerError(
        'DESKTOP_NOT_RUNNING',
        'the desktop of this session is not running',
        503,
      );
    const pool = await this.pool(session.pool_id);
    const endpoint = this.provider(pool.provider).endpoint(
      JSON.parse(desktop.handle) as DesktopHandle,
    );
    return { session, desktop, pool, endpoint };
  }

  /** first viewer attached → active */
  async markActive(sessionId: string, actor: Actor): Promise<void> {
    const r = await this.db
      .updateTable('sessions')
      .set({ state: 'active', state_since: this.nowIso(), last_input_at: this.nowIso() })
      .where('id', '=', sessionId)
      .where('state', 'in', ['starting', 'disconnected'])
      .executeTakeFirst();
    if (Number(r.numUpdatedRows)) {
      await this.audit.record({
        actor: actor.name,
        action: 'session.connect',
        target: sessionId,
        ip: actor.ip ?? null,
      });
    }
  }

  /** last viewer gone → disconnected (the desktop keeps running) */
  async markDisconnected(sessionId: string, actor: Actor, reason: string): Promise<void> {
    const r = await this.db
      .updateTable('sessions')
      .set({ state: 'disconnected', state_since: this.nowIso() })
      .where('id', '=', sessionId)
      .where('state', '=', 'active')
      .executeTakeFirst();
    if (Number(r.numUpdatedRows)) {
      await this.audit.record({
        actor: actor.name,
        action: 'session.disconnect',
        target: sessionId,
        ip: actor.ip ?? null,
        detail: { reason },
      });
    }
  }

  private lastInputWrite = new Map<string, number>();
  /** keyboard or pointer input: written at most every 10 s per session */
  noteInput(sessionId: string): void {
    const now = this.clock.now();
    if (now - (this.lastInputWrite.get(sessionId) ?? 0) < 10_000) return;
    this.lastInputWrite.set(sessionId, now);
    this.db
      .updateTable('sessions')
      .set({ last_input_at: new Date(now).toISOString() })
      .where('id', '=', sessionId)
      .execute()
      .catch((err: unknown) => this.log.warn({ err }, 'could not record input time'));
  }

  /** Admin "disconnect": close the viewers, keep the session and desktop. */
  async disconnect(sessionId: string, actor: Actor): Promise<void> {
    const s = await this.session(sessionId);
    if (!s || s.state === 'ended')
      throw new BrokerError('SESSION_NOT_FOUND', 'no live session with that id', 404);
    // record it first: closing the viewers makes the gateway mark the session disconnected
    // too, and whoever marks it first is who the audit log names
    await this.markDisconnected(sessionId, actor, 'disconnected by request');
    this.emit('session-disconnect', sessionId);
  }

  /**
   * End a session (log-off, timeout, admin). Floating desktops are destroyed (spares are
   * replenished by the tick); dedicated desktops are stopped with their disk kept.
   */
  async logoff(sessionId: string, actor: Actor, reason: string): Promise<void> {
    const s = await this.session(sessionId);
    if (!s) throw new BrokerError('SESSION_NOT_FOUND', 'no such session', 404);
    if (s.state === 'ended') return;
    const now = this.nowIso();
    const r = await this.db
      .updateTable('sessions')
      .set({ state: 'ended', state_since: now, ended_at: now, ended_reason: reason })
      .where('id', '=', sessionId)
      .where('state', '<>', 'ended')
      .executeTakeFirst();
    if (!Number(r.numUpdatedRows)) return; // someone else ended it first
    this.lastInputWrite.delete(sessionId);
    await this.audit.record({
      actor: actor.name,
      action: 'session.end',
      target: sessionId,
      ip: actor.ip ?? null,
      detail: { reason },
    });
    this.log.info({ sessionId, reason }, 'session ended');
    this.emit('session-ended', sessionId, reason);
    const pool = await this.db
      .selectFrom('pools')
      .selectAll()
      .where('id', '=', s.pool_id)
      .executeTakeFirst();
    if (pool) await this.releaseDesktop(s.desktop_id, pool, reason);
    else await this.db.deleteFrom('desktops').where('id', '=', s.desktop_id).execute();
  }

  private async releaseDesktop(desktopId: string, pool: PoolRow, reason: string): Promise<void> {
    await this.desktopLock.run(desktopId, async () => {
      const d = await this.desktop(desktopId);
      if (!d) return;
      const provider = this.provider(pool.provider);
      const handle = d.handle ? (JSON.parse(d.handle) as DesktopHandle) : undefined;
      const log = this.log.child({ desktopId });
      await this.setDesktopState(d.id, 'stopping');
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

  /** A desktop that is gone or broken: end its sessions, remove what is left of it. */
  private async cleanupDesktop(d: DesktopRow, pool: PoolRow, reason: string): Promise<void> {
    const live = await this.db
      .selectFrom('sessions')
      .select('id')
      .where('desktop_id', '=', d.id)
      .where('state', 'in', LIVE)
      .execute();
    for (const s of live) {
      await this.logoff(s.id, SYSTEM, reason);
    }
    // logoff released it; when there was no session, release it here
    if ((await this.desktop(d.id))?.state !== 'stopped')
      await this.releaseDesktop(d.id, pool, reason);
  }

  /** Admin "reset desktop": restart it in place (Xvnc) or power-reset it (VM). */
  async resetDesktop(sessionId: string, actor: Actor): Promise<void> {
    const s = await this.session(sessionId);
    if (!s || s.state === 'ended')
      throw new BrokerError('SESSION_NOT_FOUND', 'no live session with that id', 404);
    const pool = await this.pool(s.pool_id);
    const provider = this.provider(pool.provider);
    const restarted = await this.desktopLock.run(s.desktop_id, async () => {
      const d = await this.desktop(s.desktop_id);
      if (!d?.handle)
        throw new BrokerError('DESKTOP_NOT_RUNNING', 'the desktop is not running', 409);
      const handle = JSON.parse(d.handle) as DesktopHandle;
      if (provider.powerAction) {
        // A VM reboots behind the same VNC server: viewers stay attached and watch it boot.
        await provider.powerAction(handle, 'reset');
        return false;
      }
      // while it restarts, a lost connection or a failed health check is expected, not a loss
      this.restarting.add(d.id);
      try {
        this.emit('desktop-restarting', d.id);
        await provider.destroy(handle, this.log, { keepDisk: pool.assignment === 'dedicated' });
        const fresh = await this.startDesktop(pool, d);
        await this.db
          .updateTable('desktops')
          .set({ handle: JSON.stringify(fresh), state_since: this.nowIso() })
          .where('id', '=', d.id)
          .execute();
      } finally {
        this.restarting.delete(d.id);
      }
      return true;
    });
    await this.audit.record({
      actor: actor.name,
      action: 'desktop.reset',
      target: s.desktop_id,
      ip: actor.ip ?? null,
      detail: { sessionId },
    });
    if (restarted) this.emit('desktop-restarted', s.desktop_id);
  }

  // --------------------------------------------------------------- the tick

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.opts.tickMs);
    this.timer.unref();
  }

  /** Stop ticking; resolves once a tick in progress (which may be starting a spare) is done. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /**
   * Timeouts, warm spares and min size, desktop health. Safe to call at any time: ticks never
   * overlap, and the promise settles once a whole tick that started after this call is done
   * (callers during a tick share one queued rerun), so a change made before calling is seen.
   */
  tick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (!this.running) {
      this.running = this.runTick().finally(() => (this.running = undefined));
      return this.running;
    }
    this.queued ??= this.running.then(() => {
      this.queued = undefined;
      return this.tick();
    });
    return this.queued;
  }

  /**
   * Check these desktops' health now rather than at the next health round: the gateway lost
   * its RFB connection to them, which is how a crashed VM or Xvnc first shows. Resolves
   * after the tick that did it.
   */
  checkDesktopsSoon(desktopIds: string[]): Promise<void> {
    for (const id of desktopIds) this.healthDue.add(id);
    return this.tick();
  }

  private async runTick(): Promise<void> {
    try {
      await this.enforceTimeouts();
      await this.maintainPools();
      const every = this.opts.healthEveryMs ?? 10_000;
      if (this.clock.now() - this.lastHealthCheck >= every) {
        this.lastHealthCheck = this.clock.now();
        this.healthDue.clear();
        await this.checkHealth();
      } else if (this.healthDue.size > 0) {
        const due = [...this.healthDue];
        this.healthDue.clear();
        await this.checkHealth(due);
      }
    } catch (err) {
      this.log.error({ err }, 'broker tick failed');
    }
  }

  private async enforceTimeouts(): Promise<void> {
    const now = this.clock.now();
    const rows = await this.db
      .selectFrom('sessions as s')
      .innerJoin('pools as p', 'p.id', 's.pool_id')
      .select([
        's.id',
        's.state',
        's.state_since',
        's.created_at',
        's.last_input_at',
        'p.disconnected_timeout_sec',
        'p.idle_timeout_sec',
        'p.max_session_sec',
      ])
      .where('s.state', 'in', LIVE)
      .execute();
    for (const r of rows) {
      let reason: string | undefined;
      const since = Date.parse(r.state_since);
      if (
        (r.state === 'disconnected' || r.state === 'starting') &&
        r.disconnected_timeout_sec > 0 &&
        now - since >= r.disconnected_timeout_sec * 1000
      ) {
        reason = 'disconnected too long';
      } else if (
        r.state === 'active' &&
        r.idle_timeout_sec > 0 &&
        now - Date.parse(r.last_input_at ?? r.state_since) >= r.idle_timeout_sec * 1000
      ) {
        reason = 'idle too long';
      } else if (
        r.max_session_sec > 0 &&
        now - Date.parse(r.created_at) >= r.max_session_sec * 1000
      ) {
        reason = 'maximum session length reached';
      }
      if (reason) await this.logoff(r.id, SYSTEM, reason);
    }
  }

  /** Keep `spares` ready desktops and at least `minSize` desktops; trim spares above that. */
  private async maintainPools(): Promise<void> {
    const pools = await this.db.selectFrom('pools').selectAll().execute();
    for (const pool of pools) {
      if (!this.providers.has(pool.provider)) continue;
      await this.poolLock.run(pool.id, async () => {
        const desktops = await this.db
          .selectFrom('desktops')
          .selectAll()
          .where('pool_id', '=', pool.id)
          .execute();
        const alive = desktops.filter((d) => d.state !== 'failed');
        const free = alive.filter(
          (d) => (d.state === 'ready' || d.state === 'provisioning') && d.owner_user_id === null,
        );
        const wantSpares = pool.draining ? 0 : pool.spares;
        let need = Math.max(
          wantSpares - free.length,
          pool.draining ? 0 : pool.min_size - alive.length,
        );
        need = Math.min(need, pool.max_size - alive.length);
        for (let i = 0; i < need; i++) {
          try {
            await this.provisionDesktop(pool, { owner: null, state: 'ready' });
          } catch (err) {
            this.log.warn({ err, pool: pool.name }, 'could not start a spare desktop');
            break;
          }
        }
        // too many idle desktops (after a shrink or when draining): stop the extra ones,
        // down to the spare count and to max size, never below min size
        const idle = free.filter((d) => d.state === 'ready').length;
        let extra = Math.min(
          Math.max(idle - wantSpares, alive.length - pool.max_size),
          alive.length - (pool.draining ? 0 : pool.min_size),
        );
        for (const d of free) {
          if (extra <= 0) break;
          if (d.state !== 'ready') continue;
          const claimed = await this.db
            .updateTable('desktops')
            .set({ state: 'stopping', state_since: this.nowIso() })
            .where('id', '=', d.id)
            .where('state', '=', 'ready')
            .executeTakeFirst();
          if (Number(claimed.numUpdatedRows)) {
            await this.releaseDesktop(d.id, pool, 'pool shrunk');
            extra--;
          }
        }
      });
    }
  }

  private readonly unhealthy = new Map<string, string>();

  /** desktops to check at the next tick whatever the cadence (see checkDesktopsSoon) */
  private readonly healthDue = new Set<string>();

  private async checkHealth(only?: string[]): Promise<void> {
    let q = this.db
      .selectFrom('desktops as d')
      .innerJoin('pools as p', 'p.id', 'd.pool_id')
      .selectAll('d')
      .select(['p.provider'])
      .where('d.handle', 'is not', null)
      .where('d.state', 'in', ['ready', 'in-use']);
    if (only) q = q.where('d.id', 'in', only);
    const rows = (await q.execute()).filter((d) => !this.restarting.has(d.id));
    for (const d of rows) {
      const provider = this.providers.get(d.provider);
      if (!provider) continue;
      const h = await provider
        .health(JSON.parse(d.handle!) as DesktopHandle)
        .catch((e: unknown) => ({ state: 'unresponsive' as const, reason: String(e) }));
      const prev = this.unhealthy.get(d.id);
      if (h.state === 'running') {
        if (prev) {
          this.unhealthy.delete(d.id);
          this.emit('desktop-health', d.id, 'running');
        }
      } else if (h.state === 'dead') {
        this.unhealthy.delete(d.id);
        this.log.warn({ desktopId: d.id, reason: h.reason }, 'desktop lost');
        this.emit('desktop-health', d.id, 'dead', h.reason);
        const pool = await this.pool(d.pool_id);
        await this.cleanupDesktop(d, pool, `desktop lost: ${h.reason}`);
      } else if (prev !== h.state) {
        this.unhealthy.set(d.id, h.state);
        this.log.warn({ desktopId: d.id, state: h.state, reason: h.reason }, 'desktop unhealthy');
        this.emit('desktop-health', d.id, h.state, h.reason);
      }
    }
  }

  /** Health of one desktop now (admin console, gateway). */
  async desktopHealth(desktopId: string): Promise<string> {
    return this.unhealthy.get(desktopId) ?? 'running';
  }

  // ------------------------------------------------------------ reconciliation

  /**
   * Start-up: every desktop row is checked against reality. Running ones are re-adopted,
   * dead ones cleaned up (their sessions ended), half-started ones removed, and processes no
   * row accounts for are stopped. Desktops are never killed just because we restarted.
   */
  async reconcile(): Promise<{ adopted: number; cleaned: number; swept: number }> {
    let adopted = 0;
    let cleaned = 0;
    const rows = await this.db.selectFrom('desktops').selectAll().execute();
    const known = new Map<string, DesktopHandle[]>();
    for (const d of rows) {
      const pool = await this.db
        .selectFrom('pools')
        .selectAll()
        .where('id', '=', d.pool_id)
        .executeTakeFirst();
      const provider = pool ? this.providers.get(pool.provider) : undefined;
      const handle = d.handle ? (JSON.parse(d.handle) as DesktopHandle) : undefined;
      const log = this.log.child({ desktopId: d.id });
      if (!pool || !provider) {
        log.warn('desktop of a missing pool or provider: removing the record');
        await this.db.deleteFrom('desktops').where('id', '=', d.id).execute();
        cleaned++;
        continue;
      }
      if (d.state === 'stopped' && !handle) continue; // a dedicated desktop at rest
      const health = handle
        ? await provider.health(handle)
        : { state: 'dead' as const, reason: 'never started' };
      if (
        health.state === 'dead' ||
        d.state === 'provisioning' ||
        d.state === 'stopping' ||
        d.state === 'failed'
      ) {
        log.warn({ state: d.state, health }, 'reconcile: cleaning up desktop');
        if (handle)
          await provider
            .destroy(handle, log, { keepDisk: pool.assignment === 'dedicated' })
            .catch((err: unknown) => log.error({ err }, 'destroy failed'));
        if (handle)
          await this.db
            .updateTable('desktops')
            .set({ handle: null })
            .where('id', '=', d.id)
            .execute();
        await this.cleanupDesktop(
          { ...d, handle: null },
          pool,
          'desktop lost while the server was down',
        );
        cleaned++;
        continue;
      }
      adopted++;
      if (handle) known.set(pool.provider, [...(known.get(pool.provider) ?? []), handle]);
      log.info({ state: d.state }, 'reconcile: re-adopted running desktop');
    }
    // sessions pointing at desktops that no longer exist
    const orphans = await this.db
      .selectFrom('sessions as s')
      .leftJoin('desktops as d', 'd.id', 's.desktop_id')
      .select(['s.id'])
      .where('s.state', 'in', LIVE)
      .where((eb) => eb.or([eb('d.id', 'is', null), eb('d.handle', 'is', null)]))
      .execute();
    for (const o of orphans) {
      await this.db
        .updateTable('sessions')
        .set({
          state: 'ended',
          ended_at: this.nowIso(),
          state_since: this.nowIso(),
          ended_reason: 'desktop lost while the server was down',
        })
        .where('id', '=', o.id)
        .execute();
      cleaned++;
    }
    // claimed but never given a session (the server died in between): give them back
    const unclaimed = await this.db
      .selectFrom('desktops as d')
      .selectAll('d')
      .where('d.state', '=', 'in-use')
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('sessions as s')
              .select('s.id')
              .whereRef('s.desktop_id', '=', 'd.id')
              .where('s.state', 'in', LIVE),
          ),
        ),
      )
      .execute();
    for (const d of unclaimed) {
      const pool = await this.pool(d.pool_id);
      await this.releaseDesktop(d.id, pool, 'claimed without a session');
      cleaned++;
    }
    // viewers are gone after a restart: active sessions are now disconnected
    await this.db
      .updateTable('sessions')
      .set({ state: 'disconnected', state_since: this.nowIso() })
      .where('state', '=', 'active')
      .execute();
    let swept = 0;
    for (const [kind, provider] of this.providers) {
      if (provider.sweep) swept += await provider.sweep(known.get(kind) ?? [], this.log);
    }
    this.log.info({ adopted, cleaned, swept }, 'reconciliation done');
    return { adopted, cleaned, swept };
  }
}
