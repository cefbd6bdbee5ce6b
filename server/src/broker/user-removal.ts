import type { Actor } from './actor.js';
import { BrokerPart, type BrokerContext } from './context.js';
import type { Desktops } from './desktops.js';
import type { UserPreferences } from './preferences.js';
import type { SessionLifecycle } from './sessions.js';

/**
 * Deleting a user account: their sessions end, their grants and memberships go, the
 * dedicated desktops they own are freed (running) or purged (stopped), their preferences go,
 * then the account.
 */
export class UserRemoval extends BrokerPart {
  constructor(
    ctx: BrokerContext,
    private readonly desktops: Desktops,
    private readonly sessions: SessionLifecycle,
    private readonly prefs: UserPreferences,
  ) {
    super(ctx);
  }

  /**
   * `signOut` closes the user's sign-ins and sockets (auth and gateway, above the broker); it
   * runs once their sessions have ended, so their viewers hear why before they are closed.
   */
  async remove(
    user: { id: string; username: string },
    actor: Actor,
    signOut: () => Promise<void>,
  ): Promise<void> {
    const id = user.id;
    const live = await this.db
      .selectFrom('sessions')
      .select('id')
      .where('user_id', '=', id)
      .where('state', '<>', 'ended')
      .execute();
    for (const s of live) await this.sessions.logoff(s.id, actor, 'user deleted');
    await signOut();
    await this.db
      .deleteFrom('entitlements')
      .where('principal_type', '=', 'user')
      .where('principal_id', '=', id)
      .execute();
    await this.db.deleteFrom('group_members').where('user_id', '=', id).execute();
    await this.prefs.remove(id);
    await this.db
      .updateTable('desktops')
      .set({ owner_user_id: null })
      .where('owner_user_id', '=', id)
      .where('state', '<>', 'stopped')
      .execute();
    const stopped = await this.db
      .selectFrom('desktops')
      .select('id')
      .where('owner_user_id', '=', id)
      .execute();
    for (const d of stopped) await this.desktops.purge(d.id);
    await this.db.deleteFrom('users').where('id', '=', id).execute();
    await this.record(actor, 'user.delete', id, { username: user.username });
  }
}
