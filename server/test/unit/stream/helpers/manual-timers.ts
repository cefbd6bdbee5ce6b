import type { TimerHandle } from '../../../../src/stream/timer.js';

/** Timers that run only when the test says so. */
export class ManualTimers {
  private readonly pending = new Set<{ fn: () => void }>();
  readonly schedule = (fn: () => void): TimerHandle => {
    const t = { fn };
    this.pending.add(t);
    return { cancel: () => this.pending.delete(t) };
  };
  get count(): number {
    return this.pending.size;
  }
  fireAll(): void {
    for (const t of [...this.pending]) {
      this.pending.delete(t);
      t.fn();
    }
  }
}
