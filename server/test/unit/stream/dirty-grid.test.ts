import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CELL, DirtyGrid } from '../../../src/stream/dirty-grid.js';

describe('DirtyGrid', () => {
  it('covers every marked pixel with its rects, within the framebuffer', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 400 }),
        fc.integer({ min: 1, max: 300 }),
        fc.array(
          fc.record({
            x: fc.nat(420),
            y: fc.nat(320),
            w: fc.integer({ min: 1, max: 200 }),
            h: fc.integer({ min: 1, max: 200 }),
          }),
          { maxLength: 30 },
        ),
        (W, H, marks) => {
          const g = new DirtyGrid(W, H);
          for (const m of marks) g.mark(m);
          const rects = g.toRects();
          for (const r of rects) {
            expect(r.x).toBeGreaterThanOrEqual(0);
            expect(r.y).toBeGreaterThanOrEqual(0);
            expect(r.x + r.w).toBeLessThanOrEqual(W);
            expect(r.y + r.h).toBeLessThanOrEqual(H);
            expect(r.w).toBeGreaterThan(0);
            expect(r.h).toBeGreaterThan(0);
          }
          const covered = (x: number, y: number) =>
            rects.some((r) => x >= r.x && x < r.x + r.w && y >= r.y && y < r.y + r.h);
          for (const m of marks) {
            const x1 = Math.min(W, m.x + m.w) - 1;
            const y1 = Math.min(H, m.y + m.h) - 1;
            if (m.x >= W || m.y >= H) continue;
            for (const [x, y] of [
              [m.x, m.y],
              [x1, y1],
              [m.x, y1],
              [x1, m.y],
            ] as const)
              expect(covered(x, y)).toBe(true);
          }
          expect(g.empty).toBe(marks.every((m) => m.x >= W || m.y >= H));
        },
      ),
    );
  });

  it('merges a text line of damage into one rect, not a grid of tiles', () => {
    const g = new DirtyGrid(1920, 1080);
    for (let x = 100; x < 900; x += 9) g.mark({ x, y: 500, w: 9, h: 15 });
    expect(g.toRects()).toHaveLength(1);
  });

  it('keeps far-apart damage as separate rects', () => {
    const g = new DirtyGrid(1920, 1080);
    g.mark({ x: 0, y: 0, w: 10, h: 10 });
    g.mark({ x: 1900, y: 1070, w: 10, h: 10 });
    const rects = g.toRects();
    expect(rects).toHaveLength(2);
    expect(rects.reduce((a, r) => a + r.w * r.h, 0)).toBeLessThanOrEqual(8 * CELL * CELL);
  });

  it('clears only cells wholly inside a rect', () => {
    const g = new DirtyGrid(64, 64);
    g.markAll();
    g.clearInside({ x: 8, y: 0, w: 40, h: 64 }); // covers cells 1 and 2 fully (16..48)
    expect(g.intersects({ x: 0, y: 0, w: 1, h: 1 })).toBe(true);
    expect(g.intersects({ x: 20, y: 20, w: 20, h: 20 })).toBe(false);
    expect(g.intersects({ x: 50, y: 0, w: 1, h: 1 })).toBe(true);
  });

  it('uses constant memory whatever the damage', () => {
    const g = new DirtyGrid(1920, 1080);
    const before = g.cells.byteLength;
    for (let i = 0; i < 10_000; i++)
      g.mark({ x: (i * 37) % 1900, y: (i * 53) % 1060, w: 20, h: 20 });
    expect(g.cells.byteLength).toBe(before);
  });
});
