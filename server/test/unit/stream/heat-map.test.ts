import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import { HeatMap } from '../../../src/stream/heat-map.js';

function setup() {
  const clock = new ManualClock();
  const heat = new HeatMap(clock);
  heat.resize(128, 64);
  return { clock, heat };
}

const cell = { x: 16, y: 16, w: 16, h: 16 };

describe('HeatMap', () => {
  it('a cell changing several times a second is hot, and cools once it stops', () => {
    const { clock, heat } = setup();
    expect(heat.isHot(cell)).toBe(false);
    for (let i = 0; i < 5; i++) {
      clock.advance(30);
      heat.touch(cell);
    }
    expect(heat.isHot(cell)).toBe(true);
    clock.advance(2000);
    expect(heat.isHot(cell)).toBe(false);
  });

  it('a rect is hot when at least half of its cells are', () => {
    const { clock, heat } = setup();
    for (let i = 0; i < 5; i++) {
      clock.advance(30);
      heat.touch({ x: 0, y: 0, w: 32, h: 16 }); // 2 of the 4 cells below
    }
    expect(heat.isHot({ x: 0, y: 0, w: 64, h: 16 })).toBe(true);
    expect(heat.isHot({ x: 0, y: 0, w: 96, h: 16 })).toBe(false);
  });

  it('quietFor counts from the latest change of any cell of the rect', () => {
    const { clock, heat } = setup();
    heat.touch({ x: 0, y: 0, w: 16, h: 16 });
    clock.advance(100);
    heat.touch({ x: 48, y: 0, w: 16, h: 16 });
    clock.advance(50);
    expect(heat.quietFor({ x: 0, y: 0, w: 16, h: 16 }, clock.now())).toBe(150);
    expect(heat.quietFor({ x: 0, y: 0, w: 64, h: 16 }, clock.now())).toBe(50);
  });

  it('hotCells: none without a pass while nothing is hot, the hot cells while some are', () => {
    const { clock, heat } = setup();
    heat.touch(cell); // changed once: not hot
    expect(heat.hotCells()).toBeUndefined();
    for (let i = 0; i < 5; i++) {
      clock.advance(30);
      heat.touch(cell);
    }
    const hot = heat.hotCells();
    expect(hot).toBeDefined();
    expect([...hot!.hot.entries()].filter(([, v]) => v).map(([i]) => i)).toEqual([1 * 8 + 1]);
    // still hot a little later, then cooled for good
    clock.advance(400);
    expect(heat.hotCells()?.hot[9]).toBe(1);
    clock.advance(1600);
    expect(heat.hotCells()).toBeUndefined();
    // a resize forgets the heat
    for (let i = 0; i < 5; i++) {
      clock.advance(30);
      heat.touch(cell);
    }
    heat.resize(128, 64);
    expect(heat.hotCells()).toBeUndefined();
  });

  it('starts cold after a resize', () => {
    const { clock, heat } = setup();
    for (let i = 0; i < 5; i++) {
      clock.advance(30);
      heat.touch(cell);
    }
    heat.resize(256, 128);
    expect(heat.isHot(cell)).toBe(false);
  });
});
