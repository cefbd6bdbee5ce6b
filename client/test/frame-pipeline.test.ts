import { describe, expect, it, vi } from 'vitest';
import { FRAME_VERSION, encodeFrame } from '@vdi/shared';
import type { CanvasPainter } from '../src/viewer/canvas-painter';
import { FramePipeline } from '../src/viewer/frame-pipeline';
import { RepaintRequests } from '../src/viewer/repaint-requests';
import { ViewerStats } from '../src/viewer/stats';
import { ManualClock } from './helpers/manual-clock';

function setup() {
  const clock = new ManualClock();
  const refresh = vi.fn();
  const on = { drawn: vi.fn(), ack: vi.fn(), outdated: vi.fn() };
  // nothing is drawn in these cases: the painter is never reached
  const painter = { width: 0, height: 0, paint: vi.fn() } as unknown as CanvasPainter;
  const pipeline = new FramePipeline(
    painter,
    new ViewerStats(() => clock.now()),
    new RepaintRequests(refresh, clock),
    on,
    clock,
  );
  return { pipeline, on, refresh, clock };
}

/** a frame without rects, as the server of another layout version would lay out its start */
function frameOfVersion(version: number, seq: number): Uint8Array {
  const bytes = encodeFrame({
    seq,
    fbWidth: 64,
    fbHeight: 32,
    sentAt: 0,
    flags: 0,
    quality: 0,
    rects: [],
  });
  bytes[1] = version;
  return bytes;
}

describe('FramePipeline', () => {
  it('says once that the page is outdated when the server sends another frame version', () => {
    const { pipeline, on, refresh, clock } = setup();
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    pipeline.receive(frameOfVersion(FRAME_VERSION - 1, 7));
    clock.advance(5000);
    pipeline.receive(frameOfVersion(FRAME_VERSION - 1, 8));
    expect(on.outdated).toHaveBeenCalledTimes(1);
    expect(on.outdated).toHaveBeenCalledWith(FRAME_VERSION - 1);
    // flow control goes on, but a repaint would come in the same layout: none is asked for
    expect(on.ack.mock.calls).toEqual([
      [7, 0],
      [8, 0],
    ]);
    expect(refresh).not.toHaveBeenCalled();
    expect(on.drawn).not.toHaveBeenCalled();
  });

  it('asks for a repaint, not a reload, when a frame of its own version is broken', () => {
    const { pipeline, on, refresh } = setup();
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    const broken = frameOfVersion(FRAME_VERSION, 9).subarray(0, 13); // cut inside the varints
    pipeline.receive(broken);
    expect(on.ack).toHaveBeenCalledWith(9, 0);
    expect(refresh).toHaveBeenCalledTimes(1);
    expect(on.outdated).not.toHaveBeenCalled();
  });
});
