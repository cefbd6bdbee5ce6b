import { describe, expect, it } from 'vitest';
import { statsRows } from '../src/viewer/stats-panel';
import { ViewerStats } from '../src/viewer/stats';
import { ManualClock } from './helpers/manual-clock';

describe('statsRows', () => {
  it('shows the rolling figures with their units, lossless when the newest frame was', () => {
    const clock = new ManualClock();
    const stats = new ViewerStats(() => clock.now());
    stats.received(12_500);
    stats.drawn(3, 4.25, 0);
    expect(Object.fromEntries(statsRows(stats.snapshot(), { width: 1280, height: 800 }))).toEqual({
      FPS: '1',
      Received: '100 kbit/s',
      'Decode + draw': '4.3 ms/frame',
      Quality: 'lossless',
      'Rects/frame': '3.0',
      Frames: '1',
      Size: '1280×800',
    });
    stats.drawn(1, 2, 60);
    expect(statsRows(stats.snapshot(), { width: 1, height: 1 })[3]).toEqual(['Quality', '60']);
  });
});
