import { describe, expect, it } from 'vitest';
import {
  DeltaMode,
  MAX_CLICKS_PER_EVENT,
  PIXELS_PER_CLICK,
  RfbButton,
  WheelAccumulator,
  fitSize,
  rfbButtons,
  toFramebuffer,
} from '../src/viewer/pointer';

describe('toFramebuffer', () => {
  const box = { left: 100, top: 50, width: 640, height: 400 }; // a 1280×800 desktop at half size

  it('maps CSS pixels on a scaled canvas to framebuffer pixels', () => {
    expect(toFramebuffer(100, 50, box, 1280, 800)).toEqual({ x: 0, y: 0 });
    expect(toFramebuffer(420, 250, box, 1280, 800)).toEqual({ x: 640, y: 400 });
    expect(toFramebuffer(100.75, 50.25, box, 1280, 800)).toEqual({ x: 1, y: 0 });
  });

  it('maps 1:1 when the canvas is shown at its own size', () => {
    const oneToOne = { left: 0, top: 0, width: 1280, height: 800 };
    expect(toFramebuffer(17.9, 33.2, oneToOne, 1280, 800)).toEqual({ x: 17, y: 33 });
  });

  it('maps an upscaled canvas', () => {
    const big = { left: 0, top: 0, width: 2048, height: 1536 }; // 1024×768 at 2×
    expect(toFramebuffer(2047, 1535, big, 1024, 768)).toEqual({ x: 1023, y: 767 });
    expect(toFramebuffer(3, 3, big, 1024, 768)).toEqual({ x: 1, y: 1 });
  });

  it('clamps points outside the canvas (captured drags) to the framebuffer edge', () => {
    expect(toFramebuffer(0, 0, box, 1280, 800)).toEqual({ x: 0, y: 0 });
    expect(toFramebuffer(5000, 5000, box, 1280, 800)).toEqual({ x: 1279, y: 799 });
    expect(toFramebuffer(740, 450, box, 1280, 800)).toEqual({ x: 1279, y: 799 }); // exactly the far edge
  });

  it('answers 0,0 for a canvas that is not laid out yet', () => {
    expect(toFramebuffer(10, 10, { left: 0, top: 0, width: 0, height: 0 }, 1280, 800)).toEqual({
      x: 0,
      y: 0,
    });
  });
});

describe('fitSize', () => {
  it('fits by width or by height keeping the aspect ratio', () => {
    expect(fitSize(1280, 800, 1920, 1080)).toEqual({ width: 1728, height: 1080 });
    expect(fitSize(1280, 800, 640, 1000)).toEqual({ width: 640, height: 400 });
    expect(fitSize(1280, 800, 1280, 800)).toEqual({ width: 1280, height: 800 });
  });
});

describe('rfbButtons', () => {
  it('reorders DOM buttons (1 primary, 2 secondary, 4 middle) into RFB bits (1 left, 2 middle, 4 right)', () => {
    expect(rfbButtons(0)).toBe(0);
    expect(rfbButtons(1)).toBe(RfbButton.Left);
    expect(rfbButtons(2)).toBe(RfbButton.Right);
    expect(rfbButtons(4)).toBe(RfbButton.Middle);
    expect(rfbButtons(1 | 2 | 4)).toBe(RfbButton.Left | RfbButton.Middle | RfbButton.Right);
  });

  it('ignores back/forward buttons', () => {
    expect(rfbButtons(8 | 16)).toBe(0);
    expect(rfbButtons(8 | 1)).toBe(RfbButton.Left);
  });
});

describe('WheelAccumulator', () => {
  it('sends one click per line in line mode, down for positive deltaY', () => {
    const w = new WheelAccumulator();
    expect(w.add(0, 3, DeltaMode.Line)).toEqual([
      RfbButton.WheelDown,
      RfbButton.WheelDown,
      RfbButton.WheelDown,
    ]);
    expect(w.add(0, -1, DeltaMode.Line)).toEqual([RfbButton.WheelUp]);
  });

  it('accumulates small pixel deltas (touchpads) into whole clicks and keeps the rest', () => {
    const w = new WheelAccumulator();
    const step = PIXELS_PER_CLICK / 4;
    expect(w.add(0, step, DeltaMode.Pixel)).toEqual([]);
    expect(w.add(0, step, DeltaMode.Pixel)).toEqual([]);
    expect(w.add(0, step, DeltaMode.Pixel)).toEqual([]);
    expect(w.add(0, step, DeltaMode.Pixel)).toEqual([RfbButton.WheelDown]);
    expect(w.add(0, PIXELS_PER_CLICK * 1.5, DeltaMode.Pixel)).toEqual([RfbButton.WheelDown]);
    expect(w.add(0, PIXELS_PER_CLICK / 2, DeltaMode.Pixel)).toEqual([RfbButton.WheelDown]);
  });

  it('drops the remainder when the direction reverses', () => {
    const w = new WheelAccumulator();
    w.add(0, PIXELS_PER_CLICK * 0.9, DeltaMode.Pixel);
    expect(w.add(0, -PIXELS_PER_CLICK * 0.5, DeltaMode.Pixel)).toEqual([]);
    expect(w.add(0, -PIXELS_PER_CLICK * 0.5, DeltaMode.Pixel)).toEqual([RfbButton.WheelUp]);
  });

  it('maps horizontal scrolling to bits 5 (left) and 6 (right)', () => {
    const w = new WheelAccumulator();
    expect(w.add(-1, 0, DeltaMode.Line)).toEqual([RfbButton.WheelLeft]);
    expect(w.add(2, 0, DeltaMode.Line)).toEqual([RfbButton.WheelRight, RfbButton.WheelRight]);
    expect(RfbButton.WheelLeft).toBe(32);
    expect(RfbButton.WheelRight).toBe(64);
  });

  it('bounds the clicks of one event (page mode, flings)', () => {
    const w = new WheelAccumulator();
    expect(w.add(0, 5, DeltaMode.Page)).toHaveLength(MAX_CLICKS_PER_EVENT);
    expect(new WheelAccumulator().add(0, 1, DeltaMode.Page).length).toBeGreaterThan(1);
  });

  it('ignores non-finite deltas', () => {
    expect(
      new WheelAccumulator().add(Number.NaN, Number.POSITIVE_INFINITY, DeltaMode.Pixel),
    ).toEqual([]);
  });
});
