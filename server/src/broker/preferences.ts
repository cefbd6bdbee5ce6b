import { Preferences } from '@vdi/shared';
import type { Actor } from './actor.js';
import { BrokerPart } from './context.js';

/** The settings row of a user's viewer preferences (JSON of Preferences). */
export const preferencesKey = (userId: string): string => `user-preferences:${userId}`;

/**
 * Each user's own viewer preferences (keyboard layout), one row of the settings table per
 * user; a user who never chose has the defaults. Removed with the user (user-removal.ts).
 */
export class UserPreferences extends BrokerPart {
  async get(userId: string): Promise<Preferences> {
    const row = await this.db
      .selectFrom('settings')
      .select('value')
      .where('key', '=', preferencesKey(userId))
      .executeTakeFirst();
    let stored: unknown = {};
    try {
      stored = row ? JSON.parse(row.value) : {};
    } catch {
      this.log.warn({ userId }, 'unreadable preferences row; defaults used');
    }
    // a value of an older version (a layout since removed) falls back to the defaults
    const parsed = Preferences.safeParse(stored);
    return parsed.success ? parsed.data : Preferences.parse({});
  }

  async set(actor: Actor & { id: string }, prefs: Preferences): Promise<void> {
    const key = preferencesKey(actor.id);
    const value = JSON.stringify(prefs);
    await this.db
      .insertInto('settings')
      .values({ key, value })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value }))
      .execute();
    await this.record(actor, 'user.preferences', actor.id, prefs);
  }

  async remove(userId: string): Promise<void> {
    await this.db.deleteFrom('settings').where('key', '=', preferencesKey(userId)).execute();
  }
}
