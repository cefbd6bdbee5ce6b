import os from 'node:os';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type {
  DrainResult,
  MoveResult,
  MyDesktop,
  PowerAction,
  Preferences,
  SessionInfo,
} from '@vdi/shared';
import type { Clock } from '../clock.js';
import { metrics } from '../metrics.js';
import type { Db } from '../store/db.js';
import type { DesktopRow, PoolRow, SessionRow } from '../store/schema.js';
import type { DesktopHandle, Provider } from '../providers/types.js';
import type { RfbEndpoint } from '../rfb/endpoint.js';
import type { Actor } from './actor.js';
import { Assignment } from './assignment.js';
import { AuditLog } from '../audit/audit-log.js';
import type { BrokerContext, BrokerNode } from './context.js';
import { noClusterLock, type ClusterLock } from '../store/cluster-lock.js';
import { Desktops } from './desktops.js';
import { Hosts, type HostView } from './hosts.js';
import { BrokerError } from './errors.js';
import type { BrokerEvents } from './events.js';
import { Migrations, type DesktopLinks, type MigrationOptions } from './migration.js';
import { BrokerQueries } from './queries.js';
import { Reconciler } from './reconcile.js';
import { SessionLifecycle, type AttachInfo } from './sessions.js';
import { UserPreferences } from './preferences.js';
import { BrokerTick, type TickOptions } from './tick.js';
import { UserRemoval } from './user-removal.js';

/**
 * Pools, assignment and the session lifecycle (active → disconnected → ended), desktop
 * provisioning through the providers, timeouts and warm spares on a periodic tick, and
 * start-up reconciliation. The store is the source of truth; the broker keeps no state that a
 * restart would lose except in-flight locks.
 *
 * This class is the broker's one surface (the gateway, the API and the tests use it); each
 * part lives in its own file: queries.ts, assignment.ts, sessions.ts (the lifecycle),
 * desktops.ts (start, stop, restart, an administrator's actions, all under the per-desktop
 * lock), tick.ts, reconcile.ts, user-removal.ts.
 */
export class Broker extends EventEmitter<BrokerEvents> {
  readonly audit: AuditLog;
  /** this node among several */
  readonly node: BrokerNode;
  private readonly queries: BrokerQueries;
  private readonly desktops: Desktops;
  private readonly sessions: SessionLifecycle;
  private readonly assignment: Assignment;
  private readonly ticker: BrokerTick;
  private readonly reconciler: Reconciler;
  private readonly users: UserRemoval;
  private readonly hostDirectory: Hosts;
  private readonly migrations: Migrations;
  private readonly prefs: UserPreferences;
  private readonly log: Logger;

  constructor(
    db: Db,
    providers: Map<string, Provider>,
    clock: Clock,
    log: Logger,
    opts: TickOptions & {
      node?: Partial<BrokerNode>;
      lock?: ClusterLock;
      migration?: MigrationOptions;
    },
  ) {
    super();
    this.log = log;
    const host = opts.node?.host ?? os.hostname();
    this.node = {
      host,
      id: opts.node?.id ?? `${host}-${process.pid}`,
      leaseMs: opts.node?.leaseMs ?? 30_000,
      clustered: opts.node?.clustered ?? false,
      served: [...new Set([host, ...(opts.node?.served ?? opts.migration?.hosts ?? [])])],
    };
    this.audit = new AuditLog(db, clock, log);
    const ctx: BrokerContext = {
      db,
      providers,
      clock,
      log,
      audit: this.audit,
      node: this.node,
      lock: opts.lock ?? noClusterLock,
      // EventEmitter's own emit, typed by BrokerEvents; its generic signature does not
      // accept a generic event, hence the cast
      emit: (event, ...args) =>
        void (this.emit as (e: string, ...a: unknown[]) => boolean)(event, ...args),
    };
    this.queries = new BrokerQueries(ctx);
    this.hostDirectory = new Hosts(ctx);
    this.desktops = new Desktops(ctx, this.queries, this.hostDirectory);
    this.sessions = new SessionLifecycle(ctx, this.queries, this.desktops);
    this.assignment = new Assignment(ctx, this.queries, this.desktops, this.sessions);
    this.ticker = new BrokerTick(ctx, this.queries, this.desktops, this.sessions, opts);
    this.reconciler = new Reconciler(ctx, this.queries, this.desktops, this.sessions);
    this.prefs = new UserPreferences(ctx);
    this.users = new UserRemoval(ctx, this.desktops, this.sessions, this.prefs);
    const hostName = opts.migration?.hostName ?? os.hostname();
    this.migrations = new Migrations(
      ctx,
      this.queries,
      this.desktops,
      opts.migration ?? { hostName, hosts: [hostName], drainConcurrency: 2 },
    );
  }

  /** A user's viewer preferences (defaults when never set). */
  preferences(userId: string): Promise<Preferences> {
    return this.prefs.get(userId);
  }

  /** Store the acting user's own viewer preferences. */
  setPreferences(actor: Actor, prefs: Preferences): Promise<void> {
    if (actor.id === null) throw new BrokerError('FORBIDDEN', 'only a user has preferences', 403);
    return this.prefs.set({ ...actor, id: actor.id }, prefs);
  }

  /** Set the session and desktop gauges of /metrics from the store (at each scrape). */
  async updateGauges(): Promise<void> {
    const { sessions, desktops } = await this.queries.counts();
    metrics.sessions.reset();
    for (const r of sessions) metrics.sessions.set({ state: r.state, pool: r.pool }, r.n);
    metrics.desktops.reset();
    for (const r of desktops) metrics.desktops.set({ state: r.state, pool: r.pool }, r.n);
  }

  /** The provider of a kind; PROVIDER_UNAVAILABLE (503) when this server does not have it. */
  provider(kind: string): Provider {
    return this.queries.provider(kind);
  }

  // ------------------------------------------------------------------ queries

  /** A pool; NOT_FOUND (404) when there is none. */
  pool(poolId: string): Promise<PoolRow> {
    return this.queries.pool(poolId);
  }

  /** Session rows joined with names, as the API shows them. */
  sessionInfos(filter: {
    userId?: string;
    states?: readonly string[];
    sessionId?: string;
  }): Promise<SessionInfo[]> {
    return this.queries.sessionInfos(filter);
  }

  /** The pools a user may use, with their live sessions in each. */
  myDesktops(userId: string): Promise<MyDesktop[]> {
    return this.queries.myDesktops(userId);
  }

  session(sessionId: string): Promise<SessionRow | undefined> {
    return this.queries.session(sessionId);
  }

  desktop(desktopId: string): Promise<DesktopRow | undefined> {
    return this.queries.desktop(desktopId);
  }

  // --------------------------------------------------------------- assignment

  /**
   * Connect: the user's existing session in the pool, else their dedicated desktop, else a
   * warm spare, else a new desktop below max, else POOL_FULL with nothing half-created.
   */
  connect(
    actor: Actor & { id: string },
    poolId: string,
    opts: { newSession?: boolean } = {},
  ): Promise<{ sessionId: string; desktopId: string; resumed: boolean }> {
    return this.assignment.connect(actor, poolId, opts);
  }

  // ---------------------------------------------------------------- lifecycle

  /** The gateway asks whether this user may view this session, and where its desktop is. */
  attachInfo(
    sessionId: string,
    user: { id: string; role: string },
    shadow: boolean,
  ): Promise<AttachInfo> {
    return this.sessions.attachInfo(sessionId, user, shadow);
  }

  /** first viewer attached → active */
  markActive(sessionId: string, actor: Actor): Promise<void> {
    return this.sessions.markActive(sessionId, actor);
  }

  /**
   * last viewer gone → disconnected (the desktop keeps running); with `unchangedSince`, only
   * if the session has been active since before then
   */
  markDisconnected(
    sessionId: string,
    actor: Actor,
    reason: string,
    unchangedSince?: string,
  ): Promise<void> {
    return this.sessions.markDisconnected(sessionId, actor, reason, unchangedSince);
  }

  /** the sessions marked active, for the gateway's cluster-wide presence sweep */
  activeSessionIds(): Promise<string[]> {
    return this.sessions.activeSessionIds();
  }

  /** keyboard or pointer input: written at most every 10 s per session */
  noteInput(sessionId: string): void {
    this.sessions.noteInput(sessionId);
  }

  /** Admin "disconnect": close the viewers, keep the session and desktop. */
  disconnect(sessionId: string, actor: Actor): Promise<void> {
    return this.sessions.disconnect(sessionId, actor);
  }

  /** End a session (log-off, timeout, admin); its desktop is released per pool policy. */
  logoff(sessionId: string, actor: Actor, reason: string): Promise<void> {
    return this.sessions.logoff(sessionId, actor, reason);
  }

  /** Admin "reset desktop": restart it in place (Xvnc) or power-reset it (VM). */
  resetDesktop(sessionId: string, actor: Actor): Promise<void> {
    return this.sessions.resetDesktop(sessionId, actor);
  }

  // -------------------------------------------------- an administrator's desktop actions
  // Whatever changes a desktop runs under its lock (desktops.ts); reads look it up the same way.

  /** A power action on a VM desktop; NOT_SUPPORTED (409) for desktops without them. */
  power(desktopId: string, action: PowerAction, actor: Actor): Promise<void> {
    return this.desktops.power(desktopId, action, actor);
  }

  /** The snapshots of a VM desktop. */
  snapshots(desktopId: string): Promise<string[]> {
    return this.desktops.snapshots(desktopId);
  }

  takeSnapshot(desktopId: string, name: string, actor: Actor): Promise<void> {
    return this.desktops.snapshot(desktopId, name, actor);
  }

  restoreSnapshot(desktopId: string, name: string, actor: Actor): Promise<void> {
    return this.desktops.restore(desktopId, name, actor);
  }

  /**
   * Look at a running desktop's screen (a thumbnail): `look` reaches it at its RFB endpoint.
   * When that fails, its provider tells a desktop that is gone (404 DESKTOP_GONE; it is
   * cleaned up at once) from one that does not answer (503 DESKTOP_UNREACHABLE).
   */
  async viewDesktop<T>(desktopId: string, look: (endpoint: RfbEndpoint) => Promise<T>): Promise<T> {
    const { provider, handle } = await this.queries.runningDesktop(desktopId);
    try {
      return await look(provider.endpoint(handle));
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      const health = await provider
        .health(handle)
        .catch((e: unknown) => ({ state: 'unresponsive' as const, reason: String(e) }));
      this.log.warn({ err, desktopId, health }, 'desktop could not be viewed');
      if (health.state === 'dead') {
        void this.checkDesktopsSoon([desktopId]);
        throw new BrokerError(
          'DESKTOP_GONE',
          `the desktop is no longer running${health.reason ? ` (${health.reason})` : ''}`,
          404,
        );
      }
      throw new BrokerError('DESKTOP_UNREACHABLE', `the desktop could not be reached: ${why}`, 503);
    }
  }

  // ------------------------------------------------------------- live migration

  /** The gateway's streams keep viewers attached across a move (set once it is built). */
  setDesktopLinks(links: DesktopLinks): void {
    this.migrations.setLinks(links);
  }

  /**
   * Where a desktop of provider `kind` with this handle answers RFB, as seen from this node
   * (a move's destination, told by the node that moves it). PROVIDER_UNAVAILABLE when this
   * node lacks the provider; the provider's own error when the handle is not one of its own.
   */
  endpointOf(kind: string, handle: DesktopHandle): RfbEndpoint {
    return this.migrations.provider(kind).endpoint(handle);
  }

  /** the hosts desktops may move to */
  get moveTargets(): readonly string[] {
    return this.migrations.hosts;
  }

  /** where one running desktop can move, and where it runs */
  moveTargetsFor(desktopId: string): Promise<{ hosts: string[]; current: string }> {
    return this.migrations.targetsFor(desktopId);
  }

  /** this server's host */
  get hostName(): string {
    return this.migrations.hostName;
  }

  /** Live-migrate a running VM desktop to a host; 409 MIGRATING while it moves already. */
  moveDesktop(desktopId: string, host: string, actor: Actor): Promise<MoveResult> {
    return this.migrations.move(desktopId, host, actor);
  }

  /** Move every VM desktop off a host, a few at a time. */
  drainHost(host: string, to: string | undefined, actor: Actor): Promise<DrainResult> {
    return this.migrations.drain(host, to, actor);
  }

  /** Remove every desktop of a pool being deleted: stopped, disks purged, rows gone. */
  removePoolDesktops(poolId: string): Promise<void> {
    return this.desktops.purgePool(poolId);
  }

  /**
   * Delete a user account with what hangs on it: sessions, grants, memberships, owned
   * desktops. `signOut` closes their sign-ins and sockets once their sessions have ended.
   */
  removeUser(
    user: { id: string; username: string },
    actor: Actor,
    signOut: () => Promise<void>,
  ): Promise<void> {
    return this.users.remove(user, actor, signOut);
  }

  // --------------------------------------------------------------- the tick

  start(): void {
    this.ticker.start();
  }

  /** Stop ticking; resolves once a tick in progress (which may be starting a spare) is done. */
  stop(): Promise<void> {
    return this.ticker.stop();
  }

  /**
   * Timeouts, warm spares and min size, desktop health. Resolves once a whole tick that
   * started after this call is done, so a change made before calling is seen.
   */
  tick(): Promise<void> {
    return this.ticker.tick();
  }

  /** Check these desktops' health at once (the gateway lost its link to them). */
  checkDesktopsSoon(desktopIds: string[]): Promise<void> {
    return this.ticker.checkDesktopsSoon(desktopIds);
  }

  /** Health of one desktop now (admin console, gateway). */
  desktopHealth(desktopId: string): Promise<string> {
    return this.ticker.desktopHealth(desktopId);
  }

  // ------------------------------------------------------------ reconciliation

  /** Start-up: re-adopt running desktops, clean up what is gone, sweep leftovers. */
  reconcile(): Promise<{ adopted: number; cleaned: number; swept: number }> {
    return this.reconciler.reconcile();
  }

  /** Hosts desktops are placed on (LXD cluster members) with their load; [] on one machine. */
  hosts(): Promise<HostView[]> {
    return this.hostDirectory.list();
  }

  /** Drain a host (no new desktops there), make it active again, or set its maximum. */
  updateHost(
    id: string,
    change: { state?: 'active' | 'draining'; maxSessions?: number },
    actor: Actor,
  ): Promise<HostView> {
    return this.hostDirectory.update(id, change, actor);
  }
}
