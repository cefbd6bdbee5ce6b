import { vi } from 'vitest';
import type { Cancel, Clock } from '../../src/clock';

interface Timer {
  at: number;
  /** repeat period, for `every` */
  period?: number;
  fn: () => void;
}

/** A clock tests move by hand: timers run inside advance(), in time order. */
export class ManualClock implements Clock {
  private t = 0;
  private readonly timers = new Set<Timer>();

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): Cancel {
    return this.add({ at: this.t + Math.max(0, ms), fn });
  }

  every(ms: number, fn: () => void): Cancel {
    const period = Math.max(1, ms);
    return this.add({ at: this.t + period, period, fn });
  }

  /** Timers waiting to run. */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, running every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: Timer | undefined;
      for (const timer of this.timers)
        if (timer.at <= end && (!next || timer.at < next.at)) next = timer;
      if (!next) break;
      this.t = next.at;
      if (next.period === undefined) this.timers.delete(next);
      else next.at += next.period;
      next.fn();
    }
    this.t = end;
  }

  /**
   * Waits for `work` to settle, moving time on by `stepMs` whenever it waits on a timer of this
   * clock. For work that also waits on something real (a DecompressionStream): time moves
   * only while a timer is armed, never on a schedule of its own.
   */
  async settle<T>(work: Promise<T>, stepMs: number): Promise<T> {
    let settled = false;
    const done = work.finally(() => (settled = true));
    done.catch(() => {}); // the caller gets the rejection from the return value
    while (!settled) {
      await vi.waitFor(() => {
        if (!settled && this.pending === 0) throw new Error('no timer armed yet');
      });
      if (!settled) this.advance(stepMs);
    }
    return done;
  }

  private add(timer: Timer): Cancel {
    this.timers.add(timer);
    return () => void this.timers.delete(timer);
  }
}
