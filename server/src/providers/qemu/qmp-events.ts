/**
 * QMP events of one connection, kept from the moment it is watched so that a step can wait
 * for an event that may already have come (a job that got ready before we asked).
 */
import type { QmpClient } from './qmp-client.js';
import { QmpError, type QmpEvent } from './qmp-wire.js';

/** most events kept unclaimed; older ones go first (a migration emits a few dozen) */
const MAX_KEPT = 256;

interface Waiter {
  match: (e: QmpEvent) => boolean;
  resolve: (e: QmpEvent) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class QmpEvents {
  private readonly kept: QmpEvent[] = [];
  private readonly waiters = new Set<Waiter>();
  private closed: QmpError | undefined;
  private readonly off: Array<() => void>;

  constructor(
    qmp: QmpClient,
    /** what this connection is, for error messages ("the source") */
    private readonly who: string,
  ) {
    this.off = [
      qmp.onEvent((e) => this.onEvent(e)),
      qmp.onClose((err) => {
        this.closed = err ?? new QmpError('QMP_CLOSED', `QMP connection to ${who} closed`);
        for (const w of this.waiters) {
          clearTimeout(w.timer);
          w.reject(new QmpError('QMP_CLOSED', `${who} closed its QMP connection`));
        }
        this.waiters.clear();
      }),
    ];
  }

  /** Resolves with the first event (kept or to come) that matches; claims it. */
  next(match: (e: QmpEvent) => boolean, timeoutMs: number, what: string): Promise<QmpEvent> {
    const i = this.kept.findIndex(match);
    if (i >= 0) return Promise.resolve(this.kept.splice(i, 1)[0]!);
    if (this.closed)
      return Promise.reject(new QmpError('QMP_CLOSED', `${this.who} closed its QMP connection`));
    return new Promise<QmpEvent>((resolve, reject) => {
      const w: Waiter = {
        match,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(w);
          reject(new QmpError('QMP_TIMEOUT', `${this.who}: no ${what} within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.add(w);
    });
  }

  stop(): void {
    for (const f of this.off) f();
    for (const w of this.waiters) clearTimeout(w.timer);
    this.waiters.clear();
  }

  private onEvent(e: QmpEvent): void {
    for (const w of this.waiters) {
      if (!w.match(e)) continue;
      this.waiters.delete(w);
      clearTimeout(w.timer);
      w.resolve(e);
      return;
    }
    this.kept.push(e);
    if (this.kept.length > MAX_KEPT) this.kept.shift();
  }
}
