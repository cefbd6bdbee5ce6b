import { desktopRow } from '../store/rows.js';
import { SYSTEM } from './actor.js';
import { BrokerPart, LIVE, type BrokerContext } from './context.js';
import type { SessionLifecycle } from './sessions.js';

/**
 * Published applications (issue 13): a session whose program has exited is over. Each tick
 * asks the providers that publish applications (`appExited`, a cheap /proc look) about the
 * desktops of live sessions, and logs those sessions off with the provider's reason, which
 * the viewer shows; the desktop then goes as any logged-off desktop of its pool does.
 */
export class AppExits extends BrokerPart {
  constructor(
    ctx: BrokerContext,
    private readonly sessions: SessionLifecycle,
  ) {
    super(ctx);
  }

  async check(): Promise<void> {
    const kinds = [...this.providers.values()]
      .filter((p) => p.appExited !== undefined)
      .map((p) => p.kind);
    if (kinds.length === 0) return;
    const rows = await this.db
      .selectFrom('sessions as s')
      .innerJoin('desktops as d', 'd.id', 's.desktop_id')
      .innerJoin('pools as p', 'p.id', 's.pool_id')
      .selectAll('d')
      .select(['s.id as session_id', 'p.provider'])
      .where('s.state', 'in', LIVE)
      .where('d.state', '=', 'in-use')
      .where('d.handle', 'is not', null)
      .where('p.provider', 'in', kinds)
      .execute();
    for (const raw of rows) {
      const d = desktopRow(raw);
      const reason = await this.providers.get(raw.provider)!.appExited!(d.handle!).catch(
        () => undefined,
      );
      if (!reason) continue;
      this.log.info({ sessionId: raw.session_id, desktopId: d.id, reason }, 'application exited');
      await this.sessions.logoff(raw.session_id, SYSTEM, reason);
    }
  }
}
