import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import { LoginThrottle } from '../../../src/auth/rate-limit.js';

const WINDOW_MS = 300_000;

function throttle(
  over: Partial<{
    maxPerAccount: number;
    maxPerAccountTotal: number;
    maxPerIp: number;
    maxKeys: number;
  }> = {},
) {
  const clock = new ManualClock();
  const t = new LoginThrottle(clock, {
    maxPerAccount: 3,
    maxPerAccountTotal: 6,
    maxPerIp: 5,
    windowMs: WINDOW_MS,
    ...over,
  });
  return { clock, t };
}

/** one attempt as the route makes it: check, then count a failure */
function failOnce(t: LoginThrottle, ip: string, user: string): number {
  const wait = t.check(ip, user);
  if (wait === 0) t.fail(ip, user);
  return wait;
}

describe('LoginThrottle', () => {
  it('locks an account for an address after maxPerAccount failures from it; other addresses still get in', () => {
    const { t } = throttle();
    expect(failOnce(t, '10.0.0.1', 'alice')).toBe(0);
    expect(failOnce(t, '10.0.0.1', 'alice')).toBe(0);
    expect(failOnce(t, '10.0.0.1', 'alice')).toBe(0);
    expect(t.check('10.0.0.1', 'alice')).toBe(WINDOW_MS);
    // the owner, from an address that has not failed, is not locked out
    expect(t.check('10.0.0.4', 'alice')).toBe(0);
    // another account from the failing address is not affected either
    expect(t.check('10.0.0.1', 'bob')).toBe(0);
  });

  it('locks an account for everyone after maxPerAccountTotal failures spread over addresses', () => {
    const { t } = throttle();
    for (let i = 0; i < 6; i++) expect(failOnce(t, `10.0.1.${i}`, 'alice')).toBe(0);
    expect(t.check('10.0.9.9', 'alice')).toBe(WINDOW_MS);
    expect(t.check('10.0.9.9', 'bob')).toBe(0);
  });

  it('treats user names case-insensitively', () => {
    const { t } = throttle();
    for (const u of ['Alice', 'ALICE', 'alice']) failOnce(t, '10.0.0.1', u);
    expect(t.check('10.0.0.1', 'aLiCe')).toBeGreaterThan(0);
  });

  it('limits one address across many accounts', () => {
    const { t } = throttle();
    for (let i = 0; i < 5; i++) expect(failOnce(t, '10.0.0.9', `user${i}`)).toBe(0);
    expect(t.check('10.0.0.9', 'fresh-user')).toBe(WINDOW_MS);
    expect(t.check('10.0.0.10', 'fresh-user')).toBe(0);
  });

  it('answers the time left in the window and lifts the lock when it ends', () => {
    const { t, clock } = throttle();
    for (let i = 0; i < 3; i++) failOnce(t, '10.0.0.1', 'alice');
    clock.advance(100_000);
    expect(t.check('10.0.0.1', 'alice')).toBe(WINDOW_MS - 100_000);
    clock.advance(WINDOW_MS - 100_000 - 1);
    expect(t.check('10.0.0.1', 'alice')).toBe(1);
    clock.advance(1);
    expect(t.check('10.0.0.1', 'alice')).toBe(0);
  });

  it('a successful sign-in clears that address’s account counter, not the address or account-wide ones', () => {
    const { t } = throttle({ maxPerIp: 4, maxPerAccountTotal: 5 });
    failOnce(t, '10.0.0.1', 'alice');
    failOnce(t, '10.0.0.1', 'alice');
    t.succeed('10.0.0.1', 'alice');
    failOnce(t, '10.0.0.1', 'alice');
    failOnce(t, '10.0.0.1', 'alice');
    // two failures since the success: alice from there is fine, but the address has used all 4
    expect(t.check('10.0.0.2', 'alice')).toBe(0);
    expect(t.check('10.0.0.1', 'bob')).toBeGreaterThan(0);
    // the account-wide count kept all four: one more anywhere locks alice for everyone
    failOnce(t, '10.0.0.3', 'alice');
    expect(t.check('10.0.0.9', 'alice')).toBeGreaterThan(0);
  });

  it('keeps an account and an address apart even when the name contains the separator', () => {
    const { t } = throttle({ maxPerAccount: 1 });
    failOnce(t, '10.0.0.1', 'a:b');
    expect(t.check('10.0.0.1', 'a:b')).toBeGreaterThan(0);
    expect(t.check('b:10.0.0.1', 'a')).toBe(0);
  });

  it('keeps a bounded number of keys', () => {
    const { t } = throttle({ maxKeys: 10 });
    for (let i = 0; i < 1000; i++) failOnce(t, `10.1.${i >> 8}.${i & 255}`, `u${i}`);
    const size = (t as unknown as { hits: Map<string, unknown> }).hits.size;
    expect(size).toBeLessThanOrEqual(10);
  });
});

describe('LoginThrottle under a flood of names', () => {
  it('refused attempts do not take room in the table, so they cannot push a locked account out of it', () => {
    const { t } = throttle({ maxKeys: 50, maxPerIp: 5 });
    for (let i = 0; i < 6; i++) failOnce(t, `10.0.0.${i}`, 'victim');
    expect(t.check('10.0.1.1', 'victim')).toBeGreaterThan(0);
    // one address, thousands of made-up names: after its 5 failures everything is refused
    let allowed = 0;
    for (let i = 0; i < 5000; i++) if (failOnce(t, '10.6.6.6', `made-up-${i}`) === 0) allowed++;
    expect(allowed).toBe(5);
    // the victim is still locked, and so is the flooding address
    expect(t.check('10.0.1.2', 'victim')).toBeGreaterThan(0);
    expect(t.check('10.6.6.6', 'someone-else')).toBeGreaterThan(0);
  });
});
