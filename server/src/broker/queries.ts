import type { MyDesktop, SessionInfo } from '@vdi/shared';
import type { DesktopRow, JsonObject, PoolRow, SessionRow } from '../store/schema.js';
import type { Provider } from '../providers/types.js';
import { desktopRow, poolRow } from '../store/rows.js';
import { BrokerPart, LIVE } from './context.js';
import { BrokerError } from './errors.js';

/** A desktop that runs: its row, its pool, the provider that runs it and its handle. */
export interface RunningDesktop {
  desktop: DesktopRow;
  pool: PoolRow;
  provider: Provider;
  handle: JsonObject;
}

/** Lookups: pools, entitlements, sessions and desktops as the broker and the API see them. */
export class BrokerQueries extends BrokerPart {
  /** Live sessions and desktops counted by state and pool name (the /metrics gauges). */
  async counts(): Promise<{
    sessions: Array<{ state: string; pool: string; n: number }>;
    desktops: Array<{ state: string; pool: string; n: number }>;
  }> {
    const sessions = await this.db
      .selectFrom('sessions as s')
      .innerJoin('pools as p', 'p.id', 's.pool_id')
      .select(['s.state as state', 'p.name as pool'])
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('s.state', 'in', LIVE)
      .groupBy(['s.state', 'p.name'])
      .execute();
    const desktops = await this.db
      .selectFrom('desktops as d')
      .innerJoin('pools as p', 'p.id', 'd.pool_id')
      .select(['d.state as state', 'p.name as pool'])
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .groupBy(['d.state', 'p.name'])
      .execute();
    // PostgreSQL counts come back as strings
    const num = <T extends { n: number | string }>(rows: T[]) =>
      rows.map((r) => ({ ...r, n: Number(r.n) }));
    return { sessions: num(sessions), desktops: num(desktops) };
  }

  async pool(poolId: string): Promise<PoolRow> {
    const pool = await this.db
      .selectFrom('pools')
      .selectAll()
      .where('id', '=', poolId)
      .executeTakeFirst();
    if (!pool) throw new BrokerError('NOT_FOUND', 'no such pool', 404);
    return poolRow(pool);
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
    const rows = await this.db
      .selectFrom('pools')
      .selectAll()
      .where('id', 'in', poolIds)
      .orderBy('name')
      .execute();
    return rows.map(poolRow);
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
      ...appName(p.template),
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
    const row = await this.db
      .selectFrom('desktops')
      .selectAll()
      .where('id', '=', desktopId)
      .executeTakeFirst();
    return row && desktopRow(row);
  }

  /**
   * The one lookup of a running desktop. NOT_FOUND (404) when there is no such desktop,
   * DESKTOP_NOT_RUNNING (409) when it is not running; a caller for whom either means something
   * else (a viewer: try again later) gives its own error.
   */
  async runningDesktop(desktopId: string, notRunning?: () => BrokerError): Promise<RunningDesktop> {
    const desktop = await this.desktop(desktopId);
    if (!desktop?.handle) {
      if (notRunning) throw notRunning();
      if (!desktop) throw new BrokerError('NOT_FOUND', 'no such desktop', 404);
      throw new BrokerError('DESKTOP_NOT_RUNNING', 'the desktop is not running', 409);
    }
    const pool = await this.pool(desktop.pool_id);
    return { desktop, pool, provider: this.provider(pool.provider), handle: desktop.handle };
  }
}

/** `{ app }` of a pool that publishes an application (its template's app.name), else nothing. */
function appName(template: Record<string, unknown>): { app?: string } {
  const app = template.app;
  if (typeof app === 'object' && app !== null && 'name' in app && typeof app.name === 'string')
    return { app: app.name };
  return {};
}
