import { PlacementPolicy } from '@vdi/shared';
import type { PoolRow } from '../store/schema.js';

type ProviderKindName = PoolRow['provider'];
import type { Actor } from './actor.js';
import { BrokerPart, type BrokerContext } from './context.js';
import { BrokerError } from './errors.js';
import { ClusterMutex } from './keyed-mutex.js';
import { placeDesktop, type HostLoad } from './placement.js';

/** A host as the admin console shows it. */
export interface HostView {
  /** host name (LXD cluster member) */
  id: string;
  provider: ProviderKindName;
  address: string;
  /** the admin's state; 'down' also when the provider reports the host offline */
  state: 'active' | 'draining' | 'down';
  online: boolean;
  detail: string;
  maxSessions: number;
  /** desktops it runs now */
  sessions: number;
  lastSeen: string | null;
}

const HOST_STATES = ['active', 'draining', 'down'] as const;

function hostState(s: string): HostView['state'] {
  return (HOST_STATES as readonly string[]).includes(s) ? (s as HostView['state']) : 'active';
}

/**
 * The hosts of providers that place desktops on several machines (the LXD cluster's
 * members): what the provider reports, the admin's state and maximum from the store, and
 * each host's load counted from the desktops the store records there. Placement itself is
 * the pure function in placement.ts.
 */
export class Hosts extends BrokerPart {
  /**
   * One placement at a time per provider, on every node (decision 11): the load a decision
   * reads includes every desktop placed before it, so no host gets more than its maximum
   * however many nodes place at once.
   */
  private readonly placing: ClusterMutex;

  constructor(ctx: BrokerContext) {
    super(ctx);
    this.placing = new ClusterMutex(ctx.lock, 'placement');
  }

  /** Every host of every provider that has hosts; refreshes the store's list of them. */
  async list(): Promise<HostView[]> {
    const out: HostView[] = [];
    for (const [kind, provider] of this.providers) {
      if (!provider.hosts) continue;
      let members;
      try {
        members = await provider.hosts();
      } catch (err) {
        this.log.debug({ err, provider: kind }, 'provider hosts not available');
        continue;
      }
      if (members === undefined) continue;
      const load = await this.loadOf(kind as ProviderKindName);
      const now = this.nowIso();
      for (const m of members) {
        let row = await this.db
          .selectFrom('hosts')
          .selectAll()
          .where('id', '=', m.name)
          .executeTakeFirst();
        if (row === undefined) {
          row = {
            id: m.name,
            address: m.address,
            state: 'active',
            max_sessions: 0,
            last_seen: now,
          };
          await this.db
            .insertInto('hosts')
            .values(row)
            .onConflict((oc) => oc.column('id').doNothing())
            .execute();
        }
        if (m.online) {
          await this.db
            .updateTable('hosts')
            .set({ address: m.address, last_seen: now })
            .where('id', '=', m.name)
            .execute();
        }
        const state = m.online ? hostState(row.state) : 'down';
        out.push({
          id: m.name,
          provider: kind as ProviderKindName,
          address: m.address,
          state,
          online: m.online,
          detail: m.detail,
          maxSessions: row.max_sessions,
          sessions: load.get(m.name) ?? 0,
          lastSeen: m.online ? now : row.last_seen,
        });
      }
    }
    return out;
  }

  /**
   * Desktops per host of one provider, from what the store records: the member placement
   * chose (so a desktop still starting, on any node, counts), else the one its handle names.
   * Failed desktops and dedicated ones at rest (stopped) take no room.
   */
  private async loadOf(kind: ProviderKindName): Promise<Map<string, number>> {
    const rows = await this.db
      .selectFrom('desktops')
      .innerJoin('pools', 'pools.id', 'desktops.pool_id')
      .select(['desktops.handle', 'desktops.member'])
      .where('pools.provider', '=', kind)
      .where('desktops.state', 'not in', ['failed', 'stopped'])
      .execute();
    const load = new Map<string, number>();
    for (const r of rows) {
      const member = r.member ?? hostOfHandle(r.handle);
      if (member !== undefined) load.set(member, (load.get(member) ?? 0) + 1);
    }
    return load;
  }

  /**
   * The host for desktop `desktopId` of this pool, recorded on its row (`member`) before this
   * returns; undefined when its provider runs desktops on one machine. Throws
   * NO_HOST_CAPACITY when no host may take it.
   */
  async place(
    pool: PoolRow,
    desktopId: string,
    userId: string | null,
  ): Promise<string | undefined> {
    const provider = this.provider(pool.provider);
    if (!provider.hosts) return undefined;
    return this.placing.run(pool.provider, async () => {
      const host = await this.decide(pool, userId);
      if (host !== undefined)
        await this.db
          .updateTable('desktops')
          .set({ member: host })
          .where('id', '=', desktopId)
          .execute();
      return host;
    });
  }

  private async decide(pool: PoolRow, userId: string | null): Promise<string | undefined> {
    const hosts = (await this.list()).filter((h) => h.provider === pool.provider);
    if (hosts.length === 0) return undefined;
    const policy = PlacementPolicy.safeParse(pool.template.placement);
    const userHosts = userId === null ? [] : await this.hostsOfUser(pool.provider, userId);
    const loads: HostLoad[] = hosts.map((h) => ({
      name: h.id,
      state: h.state,
      maxSessions: h.maxSessions,
      sessions: h.sessions,
    }));
    const r = placeDesktop({
      policy: policy.success ? policy.data : 'breadth-first',
      hosts: loads,
      userHosts,
    });
    if (!r.ok) throw new BrokerError('NO_HOST_CAPACITY', r.message, 503);
    this.log.info({ pool: pool.name, host: r.host, reason: r.reason }, 'desktop placed');
    return r.host;
  }

  /**
   * Hosts of the user's desktops of this provider (dedicated ones they own, and those of
   * their live sessions), most recently started first.
   */
  private async hostsOfUser(kind: ProviderKindName, userId: string): Promise<string[]> {
    const owned = this.db
      .selectFrom('desktops')
      .innerJoin('pools', 'pools.id', 'desktops.pool_id')
      .select(['desktops.handle', 'desktops.created_at'])
      .where('pools.provider', '=', kind)
      .where('desktops.owner_user_id', '=', userId)
      .where('desktops.state', '<>', 'failed');
    const viewed = this.db
      .selectFrom('sessions')
      .innerJoin('desktops', 'desktops.id', 'sessions.desktop_id')
      .innerJoin('pools', 'pools.id', 'desktops.pool_id')
      .select(['desktops.handle', 'desktops.created_at'])
      .where('pools.provider', '=', kind)
      .where('sessions.user_id', '=', userId)
      .where('sessions.state', '<>', 'ended');
    const rows = [...(await owned.execute()), ...(await viewed.execute())].sort((a, b) =>
      a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0,
    );
    const hosts: string[] = [];
    for (const r of rows) {
      const h = hostOfHandle(r.handle);
      if (h !== undefined && !hosts.includes(h)) hosts.push(h);
    }
    return hosts;
  }

  /** An admin sets a host's state (drain: no new desktops there) or maximum. */
  async update(
    id: string,
    change: { state?: 'active' | 'draining'; maxSessions?: number },
    actor: Actor,
  ): Promise<HostView> {
    const row = await this.db
      .selectFrom('hosts')
      .select('id')
      .where('id', '=', id)
      .executeTakeFirst();
    if (row === undefined) {
      // a member not seen yet: look again
      await this.list();
    }
    const set: { state?: 'active' | 'draining'; max_sessions?: number } = {};
    if (change.state !== undefined) set.state = change.state;
    if (change.maxSessions !== undefined) set.max_sessions = change.maxSessions;
    const r = await this.db.updateTable('hosts').set(set).where('id', '=', id).executeTakeFirst();
    if (Number(r.numUpdatedRows) === 0)
      throw new BrokerError('HOST_NOT_FOUND', `no host named "${id}"`, 404);
    await this.record(actor, 'host.update', id, change);
    const view = (await this.list()).find((h) => h.id === id);
    if (view === undefined) throw new BrokerError('HOST_NOT_FOUND', `no host named "${id}"`, 404);
    return view;
  }
}

/** The host a desktop's handle names (`member`), if any. */
function hostOfHandle(handle: unknown): string | undefined {
  let h: unknown = handle;
  if (typeof h === 'string') {
    try {
      h = JSON.parse(h);
    } catch {
      return undefined;
    }
  }
  if (h === null || typeof h !== 'object') return undefined;
  const member = (h as { member?: unknown }).member;
  return typeof member === 'string' && member !== 'none' ? member : undefined;
}
