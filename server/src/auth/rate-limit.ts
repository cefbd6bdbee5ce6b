import type { Clock } from '../clock.js';

export interface LoginThrottleOptions {
  /** failures for one account from one client IP per window before that IP is locked out of it */
  maxPerAccount: number;
  /**
   * failures for one account from all IPs together per window before it is locked for
   * everyone: looser than maxPerAccount, so one attacker cannot lock a user out, while many
   * addresses guessing the same password are still stopped
   */
  maxPerAccountTotal: number;
  /** failures from one client IP, on any accounts, per window */
  maxPerIp: number;
  windowMs: number;
  /** entries kept at most (oldest evicted first) @default 100_000 */
  maxKeys?: number;
}

/**
 * Sign-in throttle: fixed-window failure counters per account-and-IP, per account and per IP
 * in a bounded map (oldest entries evicted first), so a flood of distinct keys cannot grow
 * memory. Keying the account lock by IP is what keeps it from being a lockout weapon: five
 * wrong passwords from one address lock that address out of the account, and the owner
 * signing in from an address that has not failed still gets in (as Guacamole's per-address
 * ban and ASVS 6.3.1's "prevent malicious account lockout" ask).
 */
export class LoginThrottle {
  private readonly hits = new Map<string, { count: number; resetAt: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly opts: LoginThrottleOptions,
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

  private static keys(ip: string, username: string) {
    const u = username.toLowerCase();
    // JSON keeps "a:b" + "c" apart from "a" + "b:c"
    return { pair: `p:${JSON.stringify([u, ip])}`, account: `u:${u}`, ip: `ip:${ip}` };
  }

  /**
   * ms to wait before trying again, or 0 when allowed. Only failures add keys: a checked (and
   * refused) attempt must not, or a flood of made-up names would evict locked counters.
   */
  check(ip: string, username: string): number {
    const now = this.clock.now();
    const k = LoginThrottle.keys(ip, username);
    const limits: Array<[string, number]> = [
      [k.pair, this.opts.maxPerAccount],
      [k.account, this.opts.maxPerAccountTotal],
      [k.ip, this.opts.maxPerIp],
    ];
    let wait = 0;
    for (const [key, max] of limits) {
      const e = this.peek(key);
      if (e && e.count >= max) wait = Math.max(wait, e.resetAt - now);
    }
    return wait;
  }

  /** count a failed attempt against the pair, the account and the address */
  fail(ip: string, username: string): void {
    const k = LoginThrottle.keys(ip, username);
    this.entry(k.pair).count++;
    this.entry(k.account).count++;
    this.entry(k.ip).count++;
  }

  /**
   * A successful sign-in clears that address's counter for the account. The account-wide
   * and per-address counters stay: signing in to one's own account must not reset the
   * budget for guessing at others, nor the bound on guesses spread over many addresses.
   */
  succeed(ip: string, username: string): void {
    this.hits.delete(LoginThrottle.keys(ip, username).pair);
  }
}
