import { sql, type SqlBool } from 'kysely';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Db } from '../store/db.js';
import type { Provider } from '../providers/types.js';
import type { Actor } from './actor.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { ClusterLock } from '../store/cluster-lock.js';
import { BrokerError } from './errors.js';
import type { BrokerEvents } from './events.js';

/** Session states that hold a desktop. */
export const LIVE = ['starting', 'active', 'disconnected'] as const;

/**
 * A `.where()` for a query over `desktops as d`: no live session holds the desktop (a
 * released desktop to stop, one claimed without its session).
 */
export const noLiveSession = sql<SqlBool>`not exists (select 1 from sessions s where s.desktop_id = d.id and s.state in (${sql.join(LIVE)}))`;

/** This node among several (decision 11). */
export interface BrokerNode {
  /** the host this node starts desktops on (hosts.id, desktops.host) */
  host: string;
  /**
   * the hosts whose desktops this node looks after (health, timeouts, reconciliation): its
   * own, and the other host names this machine serves (LOCAL_HOSTS, where desktops move)
   */
  served: readonly string[];
  /** this node (desktops.lease_node): unique per process */
  id: string;
  /** how long a lease on a desktop's in-flight work lasts without renewal, ms */
  leaseMs: number;
  /**
   * other nodes may share the store: viewers may be on them, so a start-up does not mark
   * every active session disconnected (the gateway's cluster-wide presence sweep does)
   */
  clustered: boolean;
}

/** What every part of the broker works with; the Broker builds it once and hands it round. */
export interface BrokerContext {
  readonly db: Db;
  readonly providers: Map<string, Provider>;
  readonly clock: Clock;
  readonly log: Logger;
  readonly audit: AuditLog;
  readonly node: BrokerNode;
  /** locks across nodes (PostgreSQL advisory locks; none on SQLite) */
  readonly lock: ClusterLock;
  /** tell the gateway (the Broker's own events) */
  emit<E extends keyof BrokerEvents>(event: E, ...args: BrokerEvents[E]): void;
}

/** The plumbing the broker's parts share: the context's fields, a provider by kind, now. */
export abstract class BrokerPart {
  protected readonly db: Db;
  protected readonly providers: Map<string, Provider>;
  protected readonly clock: Clock;
  protected readonly log: Logger;
  protected readonly audit: AuditLog;
  protected readonly node: BrokerNode;

  constructor(protected readonly ctx: BrokerContext) {
    this.node = ctx.node;
    this.db = ctx.db;
    this.providers = ctx.providers;
    this.clock = ctx.clock;
    this.log = ctx.log;
    this.audit = ctx.audit;
  }

  protected emit<E extends keyof BrokerEvents>(event: E, ...args: BrokerEvents[E]): void {
    this.ctx.emit(event, ...args);
  }

  /** Record what an actor did to a session, desktop or account in the audit log. */
  protected record(actor: Actor, action: string, target: string, detail?: unknown): Promise<void> {
    return this.audit.record({ actor: actor.name, action, target, ip: actor.ip ?? null, detail });
  }

  protected nowIso(): string {
    return new Date(this.clock.now()).toISOString();
  }

  /** when a lease taken now ends */
  protected leaseUntil(): string {
    return new Date(this.clock.now() + this.node.leaseMs).toISOString();
  }

  /** The provider of a kind; PROVIDER_UNAVAILABLE when this server does not have it. */
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
}
