import type { DesktopRow, PoolRow, SessionRow } from '../store/schema.js';
import { poolRow } from '../store/rows.js';
import type { RfbEndpoint } from '../rfb/endpoint.js';
import { SYSTEM, type Actor } from './actor.js';
import { BrokerPart, LIVE, type BrokerContext } from './context.js';
import type { Desktops } from './desktops.js';
import { BrokerError } from './errors.js';
import type { BrokerQueries } from './queries.js';

/** What a viewer needs to attach to a session: the rows and where the desktop listens. */
export interface AttachInfo {
  session: SessionRow;
  desktop: DesktopRow;
  pool: PoolRow;
  endpoint: RfbEndpoint;
}

/**
 * The session lifecycle: starting → active (a viewer is attached) → disconnected (none is)
 * → ended. A session ends by log-off, timeout, an administrator or the loss of its desktop;
 * its desktop is then released (floating: destroyed; dedicated: stopped, disk kept).
 */
export class SessionLifecycle extends BrokerPart {
  constructor(
    ctx: BrokerContext,
    private readonly queries: BrokerQueries,
    private readonly desktops: Desktops,
  ) {
    super(ctx);
  }

  /** The gateway asks whether this user may view this session, and where its desktop is. */
  async attachInfo(
    sessionId: string,
    user: { id: string; role: string },
    shadow: boolean,
  ): Promise<AttachInfo> {
    const session = await this.queries.session(sessionId);
    if (!session) throw new BrokerError('SESSION_NOT_FOUND', 'no such session', 404);
    if (shadow ? user.role !== 'admin' : session.user_id !== user.id) {
      throw new BrokerError(
        'FORBIDDEN',
        shadow ? 'only administrators can shadow sessions' : 'this is not your session',
        403,
      );
    }
    // a revoked entitlement stops re-attaching (the running session is left to its timeouts)
    if (!shadow && !(await this.queries.isEntitled(user.id, session.pool_id))) {
      throw new BrokerError('NOT_ENTITLED', 'you are no longer entitled to this pool', 403);
    }
    if (session.state === 'ended') {
      throw new BrokerError(
        'SESSION_ENDED',
        `this session has ended (${session.ended_reason ?? 'logged off'})`,
        410,
      );
    }
    // for a viewer, a desktop that is not running may be back soon: a 503, not a 404 or 409
    const { desktop, pool, provider, handle } = await this.queries.runningDesktop(
      session.desktop_id,
      () =>
        new BrokerError('DESKTOP_NOT_RUNNING', 'the desktop of this session is not running', 503),
    );
    return { session, desktop, pool, endpoint: provider.endpoint(handle) };
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
      await this.record(actor, 'session.connect', sessionId);
    }
  }

  /**
   * last viewer gone → disconnected (the desktop keeps running). `unchangedSince`: only if it
   * has been active since before then (a viewer on another node that attached after the caller
   * looked for viewers keeps it active).
   */
  async markDisconnected(
    sessionId: string,
    actor: Actor,
    reason: string,
    unchangedSince?: string,
  ): Promise<void> {
    let q = this.db
      .updateTable('sessions')
      .set({ state: 'disconnected', state_since: this.nowIso() })
      .where('id', '=', sessionId)
      .where('state', '=', 'active');
    if (unchangedSince !== undefined) q = q.where('state_since', '<=', unchangedSince);
    const r = await q.executeTakeFirst();
    if (Number(r.numUpdatedRows)) {
      await this.record(actor, 'session.disconnect', sessionId, { reason });
    }
  }

  /** the sessions marked active (a viewer on some node views them) */
  async activeSessionIds(): Promise<string[]> {
    const rows = await this.db
      .selectFrom('sessions')
      .select('id')
      .where('state', '=', 'active')
      .execute();
    return rows.map((r) => r.id);
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
    const s = await this.queries.session(sessionId);
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
    const s = await this.queries.session(sessionId);
    if (!s) throw new BrokerError('SESSION_NOT_FOUND', 'no such session', 404);
    if (s.state === 'ended') return;
    // a person's log-off waits for no move (409); the server's own (timeouts) waits its turn
    if (actor !== SYSTEM) this.desktops.refuseIfMoving(s.desktop_id, 'a log-off');
    const now = this.nowIso();
    const r = await this.db
      .updateTable('sessions')
      .set({ state: 'ended', state_since: now, ended_at: now, ended_reason: reason })
      .where('id', '=', sessionId)
      .where('state', '<>', 'ended')
      .executeTakeFirst();
    if (!Number(r.numUpdatedRows)) return; // someone else ended it first
    this.lastInputWrite.delete(sessionId);
    await this.record(actor, 'session.end', sessionId, { reason });
    this.log.info({ sessionId, reason }, 'session ended');
    this.emit('session-ended', sessionId, reason);
    const pool = await this.db
      .selectFrom('pools')
      .selectAll()
      .where('id', '=', s.pool_id)
      .executeTakeFirst();
    if (pool) await this.desktops.release(s.desktop_id, poolRow(pool), reason);
    else await this.db.deleteFrom('desktops').where('id', '=', s.desktop_id).execute();
  }

  /** A desktop that is gone or broken: end its sessions, remove what is left of it. */
  async cleanupDesktop(d: DesktopRow, pool: PoolRow, reason: string): Promise<void> {
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
    if ((await this.queries.desktop(d.id))?.state !== 'stopped')
      await this.desktops.release(d.id, pool, reason);
  }

  /** Admin "reset desktop": restart it in place (Xvnc) or power-reset it (VM). */
  async resetDesktop(sessionId: string, actor: Actor): Promise<void> {
    const s = await this.queries.session(sessionId);
    if (!s || s.state === 'ended')
      throw new BrokerError('SESSION_NOT_FOUND', 'no live session with that id', 404);
    const restarted = await this.desktops.reset(s.desktop_id);
    await this.record(actor, 'desktop.reset', s.desktop_id, { sessionId });
    if (restarted) this.emit('desktop-restarted', s.desktop_id);
  }
}
