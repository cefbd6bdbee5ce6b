import { metrics } from '../metrics.js';
import { desktopRow, poolRow } from '../store/rows.js';
import { SYSTEM } from './actor.js';
import { AppExits } from './app-exits.js';
import { BrokerPart, LIVE, noLiveSession, type BrokerContext } from './context.js';
import type { Desktops } from './desktops.js';
import type { BrokerQueries } from './queries.js';
import type { SessionLifecycle } from './sessions.js';

export interface TickOptions {
  /** how often the tick runs, ms */
  tickMs: number;
  /** how often every running desktop's health is checked, ms (default 10 s) */
  healthEveryMs?: number;
  /**
   * how long before an idle or maximum-length log-off the session's viewers are warned, ms
   * (default 2 min; at most half the time-out itself, so a short one is not warned from start)
   */
  warnAheadMs?: number;
}

/** Default lead of the log-off warning, ms (Windows' idle policy warns 2 minutes ahead). */
export const DEFAULT_WARN_AHEAD_MS = 120_000;

/**
 * The periodic tick: session timeouts, warm spares and minimum sizes, desktop health. Ticks
 * never overlap; a desktop found dead has its sessions ended and what is left removed.
 */
export class BrokerTick extends BrokerPart {
  private timer: NodeJS.Timeout | undefined;
  /** the tick in progress, and at most one queued behind it (see tick()) */
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private lastHealthCheck = 0;
  private stopped = false;
  private readonly appExits: AppExits;

  constructor(
    ctx: BrokerContext,
    private readonly queries: BrokerQueries,
    private readonly desktops: Desktops,
    private readonly sessions: SessionLifecycle,
    private readonly opts: TickOptions,
  ) {
    super(ctx);
    this.appExits = new AppExits(ctx, sessions);
  }

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
    const end = metrics.brokerTickSeconds.startTimer();
    try {
      await this.db
        .updateTable('hosts')
        .set({ last_seen: this.nowIso() })
        .where('id', '=', this.node.host)
        .execute();
      await this.reapExpiredLeases();
      await this.finishHandedStops();
      await this.enforceTimeouts();
      await this.appExits.check();
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
    } finally {
      end();
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
      .innerJoin('desktops as d', 'd.id', 's.desktop_id')
      .where('s.state', 'in', LIVE)
      // the desktop's host ends it (log-off releases the desktop there)
      .where('d.host', 'in', this.node.served)
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
      if (reason) await this.sessions.logoff(r.id, SYSTEM, reason);
      else this.warnAhead(r, now);
    }
  }

  /**
   * Warn a live session's viewers of the idle or maximum-length log-off that comes first,
   * once it is within the warning lead; every tick until then, so a viewer that attaches
   * late hears it and one whose idle clock started over stops hearing it.
   */
  private warnAhead(
    r: {
      id: string;
      state: string;
      state_since: string;
      created_at: string;
      last_input_at: string | null;
      idle_timeout_sec: number;
      max_session_sec: number;
    },
    now: number,
  ): void {
    const lead = this.opts.warnAheadMs ?? DEFAULT_WARN_AHEAD_MS;
    const due: Array<{ kind: 'idle' | 'max-session'; inMs: number; timeoutMs: number }> = [];
    if (r.state === 'active' && r.idle_timeout_sec > 0) {
      const timeoutMs = r.idle_timeout_sec * 1000;
      const last = Date.parse(r.last_input_at ?? r.state_since);
      due.push({ kind: 'idle', inMs: last + timeoutMs - now, timeoutMs });
    }
    if (r.max_session_sec > 0) {
      const timeoutMs = r.max_session_sec * 1000;
      due.push({
        kind: 'max-session',
        inMs: Date.parse(r.created_at) + timeoutMs - now,
        timeoutMs,
      });
    }
    const first = due
      .filter((d) => d.inMs > 0 && d.inMs <= Math.min(lead, d.timeoutMs / 2))
      .sort((a, b) => a.inMs - b.inMs)[0];
    if (first) this.emit('session-warning', r.id, first.kind, first.inMs);
  }

  /** Keep `spares` ready desktops and at least `minSize` desktops; trim spares above that. */
  private async maintainPools(): Promise<void> {
    const pools = (await this.db.selectFrom('pools').selectAll().execute()).map(poolRow);
    for (const pool of pools) {
      if (!this.providers.has(pool.provider)) continue;
      await this.desktops.withPool(pool.id, async () => {
        const desktops = (
          await this.db.selectFrom('desktops').selectAll().where('pool_id', '=', pool.id).execute()
        ).map(desktopRow);
        const alive = desktops.filter((d) => d.state !== 'failed');
        const free = alive.filter(
          (d) => (d.state === 'ready' || d.state === 'provisioning') && d.owner_user_id === null,
        );
        // counted across hosts; trimmed only here (a host stops only its own desktops)
        const mine = free.filter((d) => d.host === this.node.host);
        const wantSpares = pool.draining ? 0 : pool.spares;
        let need = Math.max(
          wantSpares - free.length,
          pool.draining ? 0 : pool.min_size - alive.length,
        );
        need = Math.min(need, pool.max_size - alive.length);
        for (let i = 0; i < need; i++) {
          try {
            await this.desktops.provision(pool, { owner: null, state: 'ready' });
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
        for (const d of mine) {
          if (extra <= 0) break;
          if (d.state !== 'ready') continue;
          const claimed = await this.db
            .updateTable('desktops')
            .set({ state: 'stopping', state_since: this.nowIso() })
            .where('id', '=', d.id)
            .where('state', '=', 'ready')
            .executeTakeFirst();
          if (Number(claimed.numUpdatedRows)) {
            await this.desktops.release(d.id, pool, 'pool shrunk');
            extra--;
          }
        }
      });
    }
  }

  /**
   * In-flight work whose node died (its lease ran out) on this host: a desktop left
   * half-started is removed, one claimed for a session that never came is given back, one
   * that was restarting is judged by the health check from now on (decision 11).
   */
  private async reapExpiredLeases(): Promise<void> {
    const rows = (
      await this.db
        .selectFrom('desktops')
        .selectAll()
        .where('host', 'in', this.node.served)
        .where('lease_until', '<=', this.nowIso())
        .execute()
    ).map(desktopRow);
    for (const d of rows) {
      const pool = await this.queries.pool(d.pool_id).catch(() => undefined);
      const provider = pool && this.providers.get(pool.provider);
      if (!pool || !provider) continue;
      const log = this.log.child({ desktopId: d.id, node: d.lease_node });
      // taken over: whoever clears the lease first handles it
      const took = await this.db
        .updateTable('desktops')
        .set({ lease_node: null, lease_until: null })
        .where('id', '=', d.id)
        .where('lease_node', '=', d.lease_node)
        .where('lease_until', '=', d.lease_until)
        .executeTakeFirst();
      if (!Number(took.numUpdatedRows)) continue;
      log.warn({ state: d.state }, 'lease expired: taking over the in-flight work of a lost node');
      if (d.state === 'provisioning') {
        await this.sessions.cleanupDesktop(d, pool, 'its start was not finished');
        continue;
      }
      if (d.state === 'in-use') {
        const live = await this.db
          .selectFrom('sessions')
          .select('id')
          .where('desktop_id', '=', d.id)
          .where('state', 'in', LIVE)
          .executeTakeFirst();
        if (!live) await this.desktops.release(d.id, pool, 'claimed without a session');
      }
    }
  }

  /**
   * Desktops of this host a node elsewhere released (a log-off through it): their processes
   * are here, so this host stops them (see Desktops.release).
   */
  private async finishHandedStops(): Promise<void> {
    const rows = await this.db
      .selectFrom('desktops as d')
      .select(['d.id', 'd.pool_id'])
      // this machine's desktops, those moved to the other hosts it serves included
      .where('d.host', 'in', this.node.served)
      .where('d.state', '=', 'stopping')
      .where('d.handle', 'is not', null)
      .where(noLiveSession)
      .execute();
    for (const d of rows) {
      const pool = await this.queries.pool(d.pool_id).catch(() => undefined);
      if (pool && this.providers.has(pool.provider))
        await this.desktops.release(d.id, pool, 'released through a node on another host');
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
      .where('d.state', 'in', ['ready', 'in-use'])
      // only this host's desktops: a node elsewhere (another machine, or another PID or
      // mount namespace) cannot see their processes and would judge them all dead
      .where('d.host', 'in', this.node.served)
      // one another node is restarting in place is expected to look dead meanwhile
      .where((eb) =>
        eb.or([
          eb('d.lease_until', 'is', null),
          eb('d.lease_until', '<=', this.nowIso()),
          eb('d.lease_node', '=', this.node.id),
        ]),
      );
    if (only) q = q.where('d.id', 'in', only);
    const rows = (await q.execute())
      .map(desktopRow)
      .filter((d) => !this.desktops.isRestarting(d.id));
    for (const d of rows) {
      const provider = this.providers.get(d.provider);
      if (!provider) continue;
      const h = await provider
        .health(d.handle!)
        .catch((e: unknown) => ({ state: 'unresponsive' as const, reason: String(e) }));
      const prev = this.unhealthy.get(d.id);
      if (h.state === 'running') {
        if (prev) {
          this.unhealthy.delete(d.id);
          this.emit('desktop-health', d.id, 'running');
        }
      } else if (h.state === 'dead') {
        this.unhealthy.delete(d.id);
        // another node may have restarted it meanwhile: judge the row as it is now
        const fresh = await this.queries.desktop(d.id);
        if (
          !fresh ||
          JSON.stringify(fresh.handle) !== JSON.stringify(d.handle) ||
          (fresh.lease_until !== null &&
            fresh.lease_until > this.nowIso() &&
            fresh.lease_node !== this.node.id)
        )
          continue;
        this.log.warn({ desktopId: d.id, reason: h.reason }, 'desktop lost');
        this.emit('desktop-health', d.id, 'dead', h.reason);
        const pool = await this.queries.pool(d.pool_id);
        await this.sessions.cleanupDesktop(d, pool, `desktop lost: ${h.reason}`);
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
}
