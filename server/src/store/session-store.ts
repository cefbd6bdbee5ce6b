import session from 'express-session';
import type { Db } from './db.js';
import type { Clock } from '../clock.js';

/** express-session store in the database, so sign-ins survive a restart and span nodes. */
export class DbSessionStore extends session.Store {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly defaultTtlMs: number,
  ) {
    super();
  }

  private expiry(sess: session.SessionData): number {
    const exp = sess.cookie?.expires;
    return exp ? new Date(exp).getTime() : this.clock.now() + this.defaultTtlMs;
  }

  override get(
    sid: string,
    cb: (err: unknown, session?: session.SessionData | null) => void,
  ): void {
    this.db
      .selectFrom('http_sessions')
      .select(['data', 'expires_at'])
      .where('sid', '=', sid)
      .executeTakeFirst()
      .then((row) => {
        if (!row || Number(row.expires_at) <= this.clock.now()) return cb(null, null);
        cb(null, JSON.parse(row.data) as session.SessionData);
      }, cb);
  }

  override set(sid: string, sess: session.SessionData, cb?: (err?: unknown) => void): void {
    const data = JSON.stringify(sess);
    const expires_at = this.expiry(sess);
    this.db
      .insertInto('http_sessions')
      .values({ sid, data, expires_at })
      .onConflict((oc) => oc.column('sid').doUpdateSet({ data, expires_at }))
      .execute()
      .then(
        () => cb?.(),
        (e: unknown) => cb?.(e),
      );
  }

  override touch(sid: string, sess: session.SessionData, cb?: (err?: unknown) => void): void {
    this.db
      .updateTable('http_sessions')
      .set({ expires_at: this.expiry(sess) })
      .where('sid', '=', sid)
      .execute()
      .then(
        () => cb?.(),
        (e: unknown) => cb?.(e),
      );
  }

  override destroy(sid: string, cb?: (err?: unknown) => void): void {
    this.db
      .deleteFrom('http_sessions')
      .where('sid', '=', sid)
      .execute()
      .then(
        () => cb?.(),
        (e: unknown) => cb?.(e),
      );
  }

  /** drop expired rows; called by the broker's periodic tick */
  async prune(): Promise<number> {
    const r = await this.db
      .deleteFrom('http_sessions')
      .where('expires_at', '<=', this.clock.now())
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /** sign out every browser session of a user (account disabled or deleted) */
  async destroyForUser(userId: string): Promise<string[]> {
    const rows = await this.db.selectFrom('http_sessions').select(['sid', 'data']).execute();
    const sids = rows
      .filter((r) => {
        const d = JSON.parse(r.data) as { passport?: { user?: string } };
        return d.passport?.user === userId;
      })
      .map((r) => r.sid);
    if (sids.length) await this.db.deleteFrom('http_sessions').where('sid', 'in', sids).execute();
    return sids;
  }
}
