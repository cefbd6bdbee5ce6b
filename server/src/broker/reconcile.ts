import type { DesktopHandle } from '../providers/types.js';
import { desktopRow, poolRow } from '../store/rows.js';
import { BrokerPart, LIVE, noLiveSession, type BrokerContext } from './context.js';
import type { Desktops } from './desktops.js';
import type { BrokerQueries } from './queries.js';
import type { SessionLifecycle } from './sessions.js';

/** Start-up: the store's desktops held against what is really running. */
export class Reconciler extends BrokerPart {
  constructor(
    ctx: BrokerContext,
    private readonly queries: BrokerQueries,
    private readonly desktops: Desktops,
    private readonly sessions: SessionLifecycle,
  ) {
    super(ctx);
  }

  /**
   * Start-up: every desktop row is checked against reality. Running ones are re-adopted,
   * dead ones cleaned up (their sessions ended), half-started ones removed, and processes no
   * row accounts for are stopped. Desktops are never killed just because we restarted.
   */
  async reconcile(): Promise<{ adopted: number; cleaned: number; swept: number }> {
    let adopted = 0;
    let cleaned = 0;
    const now = this.nowIso();
    await this.registerHost();
    // rows from before hosts were recorded ran here (one machine then)
    await this.db
      .updateTable('desktops')
      .set({ host: this.node.host })
      .where('host', 'is', null)
      .execute();
    // only this host's desktops: another host's are not ours to judge (decision 11)
    const rows = (
      await this.db
        .selectFrom('desktops')
        .selectAll()
        .where('host', 'in', this.node.served)
        .execute()
    ).map(desktopRow);
    const known = new Map<string, DesktopHandle[]>();
    let leased = 0;
    for (const d of rows) {
      // another node on this host is starting or restarting it right now: its work, not ours
      if (d.lease_until !== null && d.lease_until > now && d.lease_node !== this.node.id) {
        leased++;
        continue;
      }
      const pool = await this.db
        .selectFrom('pools')
        .selectAll()
        .where('id', '=', d.pool_id)
        .executeTakeFirst()
        .then((p) => p && poolRow(p));
      const provider = pool ? this.providers.get(pool.provider) : undefined;
      const handle = d.handle ?? undefined;
      const log = this.log.child({ desktopId: d.id });
      if (pool && !provider) {
        // another node on this host may have the provider this one lacks
        log.warn({ provider: pool.provider }, 'reconcile: no provider here for this desktop');
        continue;
      }
      if (!pool || !provider) {
        log.warn('desktop of a missing pool: removing the record');
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
        await this.sessions.cleanupDesktop(
          { ...d, handle: null },
          pool,
          'desktop lost while the server was down',
        );
        cleaned++;
        continue;
      }
      if (d.state === 'migrating' && handle) {
        // the server stopped mid-move: the VM stays at the source (the destination, which
        // no record names, is swept below); what the VM still does of the move by itself
        // (QEMU carries on without the server) is cancelled and it runs again
        await provider
          .abandonMove?.(handle)
          .then((done) => log.info({ done }, 'reconcile: the interrupted move was undone'))
          .catch((err: unknown) => log.error({ err }, 'could not undo the interrupted move'));
        const live = await this.db
          .selectFrom('sessions')
          .select('id')
          .where('desktop_id', '=', d.id)
          .where('state', 'in', LIVE)
          .executeTakeFirst();
        await this.db
          .updateTable('desktops')
          .set({
            state: live ? 'in-use' : 'ready',
            state_since: this.nowIso(),
            error: 'a move to another host was interrupted by a server restart',
          })
          .where('id', '=', d.id)
          .execute();
        log.warn('reconcile: a move was interrupted; the desktop stays where it was');
      }
      adopted++;
      if (handle) known.set(pool.provider, [...(known.get(pool.provider) ?? []), handle]);
      log.info({ state: d.state }, 'reconcile: re-adopted running desktop');
    }
    // sessions pointing at desktops that no longer exist, or at one of this host's that is not
    // running and that no node is starting
    const orphans = await this.db
      .selectFrom('sessions as s')
      .leftJoin('desktops as d', 'd.id', 's.desktop_id')
      .select(['s.id'])
      .where('s.state', 'in', LIVE)
      .where((eb) =>
        eb.or([
          eb('d.id', 'is', null),
          eb.and([
            eb('d.handle', 'is', null),
            eb('d.host', 'in', this.node.served),
            eb.or([eb('d.lease_until', 'is', null), eb('d.lease_until', '<=', now)]),
          ]),
        ]),
      )
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
      .where('d.host', 'in', this.node.served)
      // claimed by a Connect still in progress on another node: its session is coming
      .where((eb) => eb.or([eb('d.lease_until', 'is', null), eb('d.lease_until', '<=', now)]))
      .where(noLiveSession)
      .execute();
    for (const d of unclaimed) {
      const pool = await this.queries.pool(d.pool_id);
      await this.desktops.release(d.id, pool, 'claimed without a session');
      cleaned++;
    }
    // one node: viewers are gone after a restart, so active sessions are now disconnected.
    // Several: viewers on the other nodes are still there; the gateway's presence sweep asks
    // every node and marks only the sessions no one views (decision 11)
    if (!this.node.clustered)
      await this.db
        .updateTable('sessions')
        .set({ state: 'disconnected', state_since: this.nowIso() })
        .where('state', '=', 'active')
        .execute();
    let swept = 0;
    // a desktop another node on this host is starting has no handle to keep it from a sweep
    if (leased === 0) {
      for (const [kind, provider] of this.providers) {
        if (provider.sweep) swept += await provider.sweep(known.get(kind) ?? [], this.log);
      }
    } else this.log.info({ leased }, 'reconcile: desktops in flight on another node; no sweep');
    this.log.info({ adopted, cleaned, swept, host: this.node.host }, 'reconciliation done');
    return { adopted, cleaned, swept };
  }

  /** Record this node's host among the hosts (its state and limit are the administrator's). */
  async registerHost(): Promise<void> {
    const now = this.nowIso();
    await this.db
      .insertInto('hosts')
      .values({ id: this.node.host, address: '', state: 'active', max_sessions: 0, last_seen: now })
      .onConflict((oc) => oc.column('id').doUpdateSet({ last_seen: now }))
      .execute();
  }
}
