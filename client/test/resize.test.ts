import { describe, expect, it } from 'vitest';
import type { DesktopResize } from '@vdi/shared';
import {
  DesktopResizer,
  RESIZE_DEBOUNCE_MS,
  displaySize,
  targetSize,
  type Size,
} from '../src/viewer/resize';
import { ManualClock } from './helpers/manual-clock';

const RANGE: DesktopResize = {
  allowed: true,
  fitByDefault: true,
  minWidth: 640,
  minHeight: 480,
  maxWidth: 1920,
  maxHeight: 1200,
};

function memoryStorage(): Pick<Storage, 'getItem' | 'setItem'> {
  const m = new Map<string, string>();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => void m.set(k, v) };
}

function setup(offer: DesktopResize = RANGE) {
  const clock = new ManualClock();
  const requests: Size[] = [];
  let area: Size = { width: 1000, height: 700 };
  let current: Size = { width: 1280, height: 800 };
  let changed = 0;
  const resizer = new DesktopResizer(
    {
      request: (width, height) => (requests.push({ width, height }), true),
      area: () => area,
      current: () => current,
      changed: () => void changed++,
    },
    clock,
    memoryStorage(),
  );
  resizer.attached(offer);
  return {
    clock,
    resizer,
    requests,
    setArea: (s: Size) => (area = s),
    setCurrent: (s: Size) => (current = s),
    changed: () => changed,
  };
}

describe('targetSize', () => {
  it('fills the area, clamped into the pool range, with an even width', () => {
    expect(targetSize({ width: 1001.6, height: 700.2 }, RANGE)).toEqual({
      width: 1000,
      height: 700,
    });
    expect(targetSize({ width: 300, height: 200 }, RANGE)).toEqual({ width: 640, height: 480 });
    expect(targetSize({ width: 5000, height: 3000 }, RANGE)).toEqual({
      width: 1920,
      height: 1200,
    });
    expect(targetSize({ width: 999, height: 600 }, RANGE)).toEqual({ width: 998, height: 600 });
  });
});

describe('displaySize', () => {
  it('fits for fit and scale, keeps the pixels for 1:1', () => {
    expect(displaySize('scale', { width: 1280, height: 800 }, { width: 640, height: 800 })).toEqual(
      {
        width: 640,
        height: 400,
      },
    );
    expect(
      displaySize('actual', { width: 1280, height: 800 }, { width: 640, height: 800 }),
    ).toEqual({ width: 1280, height: 800 });
  });
});

describe('DesktopResizer', () => {
  it('a pool without a resize range keeps its size (scaled) until the user picks fit', () => {
    const t = setup({ ...RANGE, fitByDefault: false });
    expect(t.resizer.mode).toBe('scale');
    t.resizer.areaChanged();
    t.clock.advance(RESIZE_DEBOUNCE_MS * 2);
    expect(t.requests).toEqual([]);
    t.resizer.setMode('fit');
    t.clock.advance(0);
    expect(t.requests).toEqual([{ width: 1000, height: 700 }]);
  });

  it('asks for the window size once attached, and again only after the window settles', () => {
    const t = setup();
    t.clock.advance(0);
    expect(t.requests).toEqual([{ width: 1000, height: 700 }]);
    t.setCurrent({ width: 1000, height: 700 });
    t.setArea({ width: 900, height: 650 });
    t.resizer.areaChanged();
    t.clock.advance(RESIZE_DEBOUNCE_MS / 2);
    t.setArea({ width: 800, height: 600 });
    t.resizer.areaChanged();
    t.clock.advance(RESIZE_DEBOUNCE_MS - 1);
    expect(t.requests).toHaveLength(1);
    t.clock.advance(1);
    expect(t.requests).toEqual([
      { width: 1000, height: 700 },
      { width: 800, height: 600 },
    ]);
  });

  it('asks nothing when the desktop already has the size', () => {
    const t = setup();
    t.setCurrent({ width: 1000, height: 700 });
    t.clock.advance(RESIZE_DEBOUNCE_MS);
    expect(t.requests).toEqual([]);
  });

  it('scale and 1:1 never resize the desktop; back to fit does', () => {
    const t = setup();
    t.resizer.setMode('scale');
    t.resizer.areaChanged();
    t.clock.advance(RESIZE_DEBOUNCE_MS * 2);
    expect(t.requests).toEqual([]);
    t.resizer.setMode('actual');
    t.clock.advance(RESIZE_DEBOUNCE_MS * 2);
    expect(t.requests).toEqual([]);
    t.resizer.setMode('fit');
    t.clock.advance(0);
    expect(t.requests).toEqual([{ width: 1000, height: 700 }]);
  });

  it('a desktop that cannot resize (a shadow, a VM) is scaled and says why', () => {
    const t = setup({ ...RANGE, allowed: false, reason: 'This virtual machine cannot…' });
    expect(t.resizer.mode).toBe('fit');
    expect(t.resizer.effectiveMode).toBe('scale');
    expect(t.resizer.reason).toBe('This virtual machine cannot…');
    t.resizer.areaChanged();
    t.clock.advance(RESIZE_DEBOUNCE_MS * 2);
    expect(t.requests).toEqual([]);
  });
});
