import { afterEach, describe, expect, it, vi } from 'vitest';
import { REPAINT_THROTTLE_MS, RepaintRequests } from '../src/viewer/repaint-requests';
import { ManualClock } from './helpers/manual-clock';

describe('RepaintRequests', () => {
  afterEach(() => vi.restoreAllMocks());

  it('asks at once, then at most once per throttle period, and logs every failure', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const clock = new ManualClock();
    let sent = 0;
    const repaint = new RepaintRequests(() => sent++, clock);
    repaint.request(new Error('first'));
    expect(sent).toBe(1);
    // a broken stream fails every rect after it: one request covers them
    repaint.request(new Error('second'));
    clock.advance(REPAINT_THROTTLE_MS - 1);
    repaint.request(new Error('third'));
    expect(sent).toBe(1);
    clock.advance(1);
    repaint.request(new Error('fourth'));
    expect(sent).toBe(2);
    expect(warn).toHaveBeenCalledTimes(4);
    expect(warn.mock.calls[3]?.[1]).toEqual(new Error('fourth'));
  });
});
