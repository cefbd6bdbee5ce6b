import { randomUUID } from 'node:crypto';
import type { DesktopRow, PoolRow } from '../store/schema.js';
import { desktopRow, jsonColumn } from '../store/rows.js';
import type { Actor } from './actor.js';
import { BrokerPart, LIVE, type BrokerContext } from './context.js';
import type { Desktops } from './desktops.js';
import { BrokerError } from './errors.js';
import { ClusterMutex } from './keyed-mutex.js';
import type { BrokerQueries } from './queries.js';
import type { SessionLifecycle } from './sessions.js';

/** Connect: which desktop a user gets, and the session that ties them together. */
export class Assignment extends BrokerPart {
  /** one Connect at a time per user and pool, on every node (decision 11) */
  private readonly userPoolLock: ClusterMutex;

  constructor(
    ctx: BrokerContext,
    private readonly queries: BrokerQueries,
    private readonly desktops: Desktops,
    private readonly sessions: SessionLifecycle,
  ) {
    super(ctx);
    this.userPoolLock = new ClusterMutex(ctx.lock, 'user-pool');
  }

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
      const pool = await this.queries.pool(poolId);
      if (!(await this.queries.isEntitled(userId, poolId))) {
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
        await this.record(actor, 'session.resume', existing.id, { poolId });
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
        await this.desktops.release(desktop.id, pool, 'session insert failed');
        throw e;
      }
      // handed out: the lease taken when it was claimed or started ends here, so no other
      // node's reconciliation took it for a desktop claimed without a session meanwhile
      await this.desktops.endLease(desktop.id);
      await this.record(actor, 'session.start', sessionId, {
        poolId,
        pool: pool.name,
        desktopId: desktop.id,
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
      if (own) return this.claimOwned(pool, desktopRow(own));
    }
    const spare = await this.claimSpare(pool, userId);
    if (spare) return spare;
    // counting and adding one is one step under the pool's lock; the start (seconds) is not
    const got = await this.desktops.withPool(pool.id, async () => {
      // a spare that became ready while this waited for the pool (the tick was starting it)
      const late = await this.claimSpare(pool, userId);
      if (late) return { ready: late };
      const total = await this.desktops.count(pool.id);
      if (total >= pool.max_size) {
        throw new BrokerError(
          'POOL_FULL',
          `pool "${pool.name}" is full (${pool.max_size} desktops); try again later`,
        );
      }
      return {
        reserved: await this.desktops.reserve(
          pool,
          pool.assignment === 'dedicated' ? userId : null,
        ),
      };
    });
    if (got.ready) return got.ready;
    return this.desktops.startReserved(pool, got.reserved, {
      state: 'in-use',
      keepLease: true,
      forUser: userId,
    });
  }

  /** A warm spare claimed for this user, if there is one that runs. */
  private async claimSpare(pool: PoolRow, userId: string): Promise<DesktopRow | undefined> {
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
      if (!spare) return undefined;
      const claimed = await this.db
        .updateTable('desktops')
        .set({
          state: 'in-use',
          state_since: this.nowIso(),
          owner_user_id: pool.assignment === 'dedicated' ? userId : null,
          lease_node: this.node.id,
          lease_until: this.leaseUntil(),
        })
        .where('id', '=', spare.id)
        .where('state', '=', 'ready')
        .where('owner_user_id', 'is', null)
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) === 1) {
        // a spare may have died while it waited; do not hand out a dead desktop
        const claimedSpare = desktopRow(spare);
        const health = claimedSpare.handle
          ? await this.provider(pool.provider).health(claimedSpare.handle)
          : { state: 'dead' as const };
        if (health.state === 'running') return { ...claimedSpare, state: 'in-use' };
        await this.sessions.cleanupDesktop(claimedSpare, pool, 'spare found dead at assignment');
      }
    }
    return undefined;
  }

  private async claimOwned(pool: PoolRow, own: DesktopRow): Promise<DesktopRow> {
    return this.desktops.withDesktop(own.id, async () => {
      const fresh = await this.queries.desktop(own.id);
      if (!fresh) throw new BrokerError('DESKTOP_GONE', 'your desktop was removed; try again', 409);
      if (fresh.state === 'ready') {
        await this.db
          .updateTable('desktops')
          .set({
            state: 'in-use',
            state_since: this.nowIso(),
            lease_node: this.node.id,
            lease_until: this.leaseUntil(),
          })
          .where('id', '=', fresh.id)
          .execute();
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
      // stopped: start it again from its kept disk, on this node's host
      await this.db
        .updateTable('desktops')
        .set({ state: 'provisioning', state_since: this.nowIso(), host: this.node.host })
        .where('id', '=', fresh.id)
        .execute();
      try {
        const handle = await this.desktops.withLease(
          fresh.id,
          () => this.desktops.start(pool, fresh, undefined, true),
          true,
        );
        await this.db
          .updateTable('desktops')
          .set({
            handle: jsonColumn(handle),
            state: 'in-use',
            state_since: this.nowIso(),
            error: null,
          })
          .where('id', '=', fresh.id)
          .execute();
        return { ...fresh, handle, state: 'in-use', host: this.node.host };
      } catch (e) {
        await this.desktops.endLease(fresh.id);
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
}
