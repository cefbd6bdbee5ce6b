/** Input events a socket may send per second before they are dropped. */
export const DEFAULT_INPUT_RATE = 600;
/** Input bytes a socket may send per second before events are dropped. */
export const DEFAULT_INPUT_BYTES_PER_SEC = 4 * 1024 * 1024;

/** What an input event costs of the byte budget: the RFB message it becomes, bytes. */
export const INPUT_COST = { key: 8, pointer: 6, resize: 24, clipboardHeader: 8 } as const;

/** Tokens left as of `at` (clock ms); refills at the rate, up to one second's worth. */
export interface TokenBucket {
  tokens: number;
  at: number;
}

export interface InputRates {
  /** events per second (the burst is the same number) */
  events: number;
  /** bytes per second (the burst is the same number) */
  bytes: number;
}

/** A viewer's budgets, one of events and one of bytes, full to start with. */
export function fullBuckets(
  rates: InputRates,
  now: number,
): { bucket: TokenBucket; byteBucket: TokenBucket } {
  return {
    bucket: { tokens: rates.events, at: now },
    byteBucket: { tokens: rates.bytes, at: now },
  };
}

/**
 * Spend one event and `bytes` from a viewer's budgets, if both have it: input beyond either
 * rate is dropped (a flood cannot starve other sessions, nor a few huge events pass for a few
 * small ones).
 */
export function spendInput(
  budgets: { bucket: TokenBucket; byteBucket: TokenBucket },
  rates: InputRates,
  now: number,
  bytes: number,
): boolean {
  const b = budgets.bucket;
  b.tokens = Math.min(rates.events, b.tokens + ((now - b.at) * rates.events) / 1000);
  b.at = now;
  const bb = budgets.byteBucket;
  bb.tokens = Math.min(rates.bytes, bb.tokens + ((now - bb.at) * rates.bytes) / 1000);
  bb.at = now;
  if (b.tokens < 1 || bb.tokens < bytes) return false;
  b.tokens--;
  bb.tokens -= bytes;
  return true;
}
