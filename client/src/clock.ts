/**
 * Injected time for the browser client (the server's counterpart is server/src/clock.ts).
 * What waits, repeats or throttles takes a Clock, so a unit test moves time by hand
 * (test/helpers/manual-clock.ts) instead of sleeping.
 */

/** Stops a timer; calling it again, or after the timer ran, does nothing. */
export type Cancel = () => void;

export interface Clock {
  /** monotonic milliseconds (performance.now in the browser) */
  now(): number;
  /** Runs `fn` once, `ms` from now. */
  after(ms: number, fn: () => void): Cancel;
  /** Runs `fn` every `ms` until cancelled. */
  every(ms: number, fn: () => void): Cancel;
}

export const browserClock: Clock = {
  now: () => performance.now(),
  after(ms, fn) {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
  every(ms, fn) {
    const timer = setInterval(fn, ms);
    return () => clearInterval(timer);
  },
};
