import { describe, expect, it } from 'vitest';
import { ViewerStats } from '../src/viewer/stats';

describe('ViewerStats', () => {
  it('reports the last second', () => {
    let now = 0;
    const s = new ViewerStats(() => now);
    s.received(1000);
    s.drawn(4, 10, 75);
    now = 500;
    s.received(1500);
    s.drawn(2, 20, 0);
    expect(s.snapshot()).toMatchObject({
      fps: 2,
      kbps: 20,
      renderMs: 15,
      rectsPerFrame: 3,
      quality: 0,
      framesDrawn: 2,
      bytesReceived: 2500,
    });
    now = 1200;
    expect(s.snapshot()).toMatchObject({ fps: 1, kbps: 12, framesDrawn: 2 });
  });
});
