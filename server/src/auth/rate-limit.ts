import type { Clock } from '../clock.js';

/**
 * Sign-in throttle per client IP and per account: a fixed window counter in a bounded map
 * (oldest entries evicted first), so a flood of distinct keys cannot grow memory.
 */
export class LoginThrottle {
  private readonly hits = new Map<string, { count: number; resetAt: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly opts: {
      maxPerAccount: number;
      maxPerIp: number;
      windowMs: number;
      maxKeys?: number;
    },
  ) {}

  private entry(key: string) {
    const now = this.clock.now();
    let e = this.hits.get(key);
    if (!e || e.resetAt <= now) {
      e = { count: 0, resetAt: now + this.opts.windowMs };
      this.hits.delete(key);
      this.hits.set(key, e);
      const max = this.opts.maxKeys ?? 100_000;
      while (this.hits.size > max) {
        const oldest = this.hits.keys().next().value;
        if (oldest === undefined) break;
        this.hits.delete(oldest);
      }
    }
    return e;
  }

  /** the live counter of a key, without creating one */
  private peek(key: string) {
    const e = this.hits.get(key);
    return e && e.resetAt > this.clock.now() ? e : undefined;
  }

  /**
   * ms to wait before trying again, or 0 when allowed. Only failures add keys: a checked (and
   * refused) attempt must not, or a flood of made-up names would evict locked counters.
   */
  check(ip: string, username: string): number {
    const now = this.clock.now();
    const a = this.peek(`u:${username.toLowerCase()}`);
    const i = this.peek(`ip:${ip}`);
    if (a && a.count >= this.opts.maxPerAccount) return a.resetAt - now;
    if (i && i.count >= this.opts.maxPerIp) return i.resetAt - now;
    return 0;
  }

  /** count a failed attempt against both keys */
  fail(ip: string, username: string): void {
    this.entry(`u:${username.toLowerCase()}`).count++;
    this.entry(`ip:${ip}`).count++;
  }

  /** a successful sign-in clears the account's counter */
  succeed(username: string): void {
    this.hits.delete(`u:${username.toLowerCase()}`);
  }
}
