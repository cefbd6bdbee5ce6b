import type { DesktopHandle } from '../providers/types.js';
import { desktopRow, poolRow } from '../store/rows.js';
import { BrokerPart, LIVE, type BrokerContext } from './context.js';
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
    const rows = (await this.db.selectFrom('desktops').selectAll().execute()).map(desktopRow);
    const known = new Map<string, DesktopHandle[]>();
    for (const d of rows) {
      const pool = await this.db
        .selectFrom('pools')
        .selectAll()
        .where('id', '=', d.pool_id)
        .executeTakeFirst()
        .then((p) => p && poolRow(p));
      const provider = pool ? this.providers.get(pool.provider) : undefined;
      const handle = d.handle ?? undefined;
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
        // no record names, is swept below); a source the move left paused runs again
        if (health.state === 'paused' && /migrat/.test(health.reason))
          await provider
            .powerAction?.(handle, 'cont')
            .catch((err: unknown) => log.error({ err }, 'could not resume the source'));
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
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('sessions as s')
              .select('s.id')
              .whereRef('s.desktop_id', '=', 'd.id')
              .where('s.state', 'in', LIVE),
          ),
        ),
      )
      .execute();
    for (const d of unclaimed) {
      const pool = await this.queries.pool(d.pool_id);
      await this.desktops.release(d.id, pool, 'claimed without a session');
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
