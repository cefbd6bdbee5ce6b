import { describe, expect, it } from 'vitest';
import { XK } from '@vdi/shared';
import { keysymsForInput } from '../src/viewer/on-screen-keyboard';
import { RfbButton } from '../src/viewer/pointer';
import { LONG_PRESS_MS, SCROLL_STEP_PX, TouchGestures, type Point } from '../src/viewer/touch';
import { ManualClock } from './helpers/manual-clock';

function setup() {
  const clock = new ManualClock();
  const sent: Array<[number, number, number]> = [];
  const zooms: number[] = [];
  const g = new TouchGestures(
    {
      pointer: (at: Point, buttons: number) => void sent.push([at.x, at.y, buttons]),
      zoom: (scale: number) => void zooms.push(scale),
    },
    clock,
  );
  return { clock, sent, zooms, g };
}

describe('TouchGestures', () => {
  it('a tap is a left click where the finger was', () => {
    const t = setup();
    t.g.update([{ x: 100, y: 50 }]);
    t.g.update([{ x: 103, y: 52 }]); // a little wobble is still a tap
    t.clock.advance(100);
    t.g.update([]);
    expect(t.sent).toEqual([
      [100, 50, 0],
      [100, 50, RfbButton.Left],
      [100, 50, 0],
    ]);
  });

  it('a long press is a right click, and lifting after it sends nothing more', () => {
    const t = setup();
    t.g.update([{ x: 10, y: 20 }]);
    t.clock.advance(LONG_PRESS_MS - 1);
    expect(t.sent).toEqual([]);
    t.clock.advance(1);
    expect(t.sent).toEqual([
      [10, 20, 0],
      [10, 20, RfbButton.Right],
      [10, 20, 0],
    ]);
    t.g.update([]);
    expect(t.sent).toHaveLength(3);
  });

  it('one finger moving is a drag with the left button', () => {
    const t = setup();
    t.g.update([{ x: 10, y: 10 }]);
    t.g.update([{ x: 40, y: 10 }]);
    t.clock.advance(LONG_PRESS_MS * 2); // no right click once it moved
    t.g.update([{ x: 60, y: 15 }]);
    t.g.update([]);
    expect(t.sent).toEqual([
      [10, 10, RfbButton.Left],
      [40, 10, RfbButton.Left],
      [60, 15, RfbButton.Left],
      [60, 15, 0],
    ]);
  });

  it('two fingers moving up scroll down, one wheel click per step', () => {
    const t = setup();
    t.g.update([
      { x: 100, y: 300 },
      { x: 200, y: 300 },
    ]);
    t.g.update([
      { x: 100, y: 300 - SCROLL_STEP_PX * 2 - 5 },
      { x: 200, y: 300 - SCROLL_STEP_PX * 2 - 5 },
    ]);
    t.g.update([]);
    const wheel = t.sent.filter(([, , b]) => b !== 0).map(([, , b]) => b);
    expect(wheel).toEqual([RfbButton.WheelDown, RfbButton.WheelDown]);
    expect(t.zooms).toEqual([]);
  });

  it('a pinch zooms the view (between 1 and 4) and sends nothing to the desktop', () => {
    const t = setup();
    t.g.update([
      { x: 100, y: 100 },
      { x: 200, y: 100 },
    ]);
    t.g.update([
      { x: 50, y: 100 },
      { x: 250, y: 100 },
    ]);
    expect(t.g.zoom).toBeCloseTo(2);
    t.g.update([
      { x: 0, y: 100 },
      { x: 1000, y: 100 },
    ]);
    expect(t.g.zoom).toBe(4);
    t.g.update([]);
    expect(t.sent).toEqual([]);
  });
});

describe('on-screen keyboard', () => {
  it('typed text and edits become key presses', () => {
    expect(keysymsForInput('insertText', 'hé')).toEqual([0x68, 0xe9]);
    expect(keysymsForInput('insertText', '€')).toEqual([0x01000000 + 0x20ac]);
    expect(keysymsForInput('deleteContentBackward', null)).toEqual([XK.BackSpace]);
    expect(keysymsForInput('insertLineBreak', null)).toEqual([XK.Return]);
  });
});
