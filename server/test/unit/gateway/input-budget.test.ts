import { describe, expect, it } from 'vitest';
import { fullBuckets, spendInput } from '../../../src/gateway/input-budget.js';

const rates = { events: 10, bytes: 100 };

describe('input budgets', () => {
  it('a burst of the rate passes, the next event does not', () => {
    const b = fullBuckets(rates, 0);
    for (let i = 0; i < 10; i++) expect(spendInput(b, rates, 0, 1)).toBe(true);
    expect(spendInput(b, rates, 0, 1)).toBe(false);
  });

  it('refills at the rate, up to one second of it', () => {
    const b = fullBuckets(rates, 0);
    for (let i = 0; i < 10; i++) spendInput(b, rates, 0, 1);
    expect(spendInput(b, rates, 99, 1)).toBe(false); // 0.99 of an event back
    expect(spendInput(b, rates, 100, 1)).toBe(true);
    let passed = 0;
    for (let i = 0; i < 20; i++) if (spendInput(b, rates, 60_000, 1)) passed++;
    expect(passed).toBe(10); // a minute idle buys no more than the burst
  });

  it('a few large events run out of bytes before they run out of events', () => {
    const b = fullBuckets(rates, 0);
    expect(spendInput(b, rates, 0, 60)).toBe(true);
    expect(spendInput(b, rates, 0, 60)).toBe(false);
    expect(spendInput(b, rates, 0, 40)).toBe(true);
  });

  it('an event refused spends nothing', () => {
    const b = fullBuckets(rates, 0);
    expect(spendInput(b, rates, 0, 101)).toBe(false);
    expect(b.bucket.tokens).toBe(10);
    expect(b.byteBucket.tokens).toBe(100);
  });
});
