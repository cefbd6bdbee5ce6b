import { describe, expect, it } from 'vitest';
import { LogoffCountdown, countdownText, formatCountdown } from '../src/viewer/countdown';
import { ManualClock } from './helpers/manual-clock';

/** the banner element, as far as the countdown uses it (no DOM in these tests) */
const banner = () => ({ hidden: true, textContent: '', dataset: {} }) as unknown as HTMLElement;

describe('formatCountdown', () => {
  it('shows minutes and seconds, rounding up, never below zero', () => {
    expect(formatCountdown(65_000)).toBe('1:05');
    expect(formatCountdown(8_200)).toBe('0:09');
    expect(formatCountdown(-5)).toBe('0:00');
  });
});

describe('LogoffCountdown', () => {
  it('counts down from the warning by itself', () => {
    const clock = new ManualClock();
    const c = new LogoffCountdown(clock, banner());
    expect(c.el.hidden).toBe(true);
    c.warn({ kind: 'max-session', inMs: 10_000 });
    expect(c.el.hidden).toBe(false);
    expect(c.el.textContent).toBe(countdownText('max-session', 10_000));
    expect(c.el.textContent).toContain('0:10');
    clock.advance(3000);
    expect(c.el.textContent).toContain('0:07');
    clock.advance(20_000);
    expect(c.el.textContent).toContain('0:00');
    expect(c.active).toBe(false);
  });

  it('input hides an idle warning, not a time-limit one', () => {
    const clock = new ManualClock();
    const c = new LogoffCountdown(clock, banner());
    c.warn({ kind: 'max-session', inMs: 60_000 });
    c.input();
    expect(c.el.hidden).toBe(false);
    c.warn({ kind: 'idle', inMs: 60_000 });
    expect(c.el.textContent).toContain('idle');
    c.input();
    expect(c.el.hidden).toBe(true);
    expect(c.active).toBe(false);
  });
});
