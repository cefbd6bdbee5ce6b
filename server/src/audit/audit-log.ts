import type { Logger } from 'pino';
import type { Db } from '../store/db.js';
import type { Clock } from '../clock.js';

export interface AuditEvent {
  actor: string | null;
  action: string;
  target?: string | null;
  detail?: unknown;
  ip?: string | null;
}

/** Append-only audit trail: sign-ins, failed sign-ins, connects, disconnects, admin changes. */
export class AuditLog {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  async record(e: AuditEvent): Promise<void> {
    try {
      await this.db
        .insertInto('audit_log')
        .values({
          at: new Date(this.clock.now()).toISOString(),
          actor: e.actor,
          action: e.action,
          target: e.target ?? null,
          detail: e.detail === undefined ? null : JSON.stringify(e.detail),
          ip: e.ip ?? null,
        })
        .execute();
    } catch (err) {
      // the audit trail must never take a user action down with it; the log keeps the event
      this.log.error({ err, audit: e }, 'audit write failed');
    }
  }
}
