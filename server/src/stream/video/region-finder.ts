import { CELL, type Rect } from '../dirty-grid.js';
import type { HotCells } from '../heat-map.js';

/** A video region has at least this many pixels (160×120); smaller motion stays on images. */
export const MIN_VIDEO_PIXELS = 160 * 120;
/** At least this share of a region's cells must be hot, so static content stays out of it. */
const MIN_HOT_SHARE = 0.6;

/**
 * The region of the screen in motion, if there is one worth a video stream: the biggest
 * 8-connected group of hot cells, as its bounding box in pixels (cell-aligned, sides even
 * for 4:2:0, inside the framebuffer), when it is dense and big enough.
 */
export function findVideoRegion(cells: HotCells, width: number, height: number): Rect | undefined {
  const { cols, rows, hot } = cells;
  const seen = new Uint8Array(hot.length);
  const stack: number[] = [];
  let best: { c0: number; r0: number; c1: number; r1: number; n: number } | undefined;
  for (let start = 0; start < hot.length; start++) {
    if (!hot[start] || seen[start]) continue;
    let c0 = cols;
    let r0 = rows;
    let c1 = 0;
    let r1 = 0;
    let n = 0;
    seen[start] = 1;
    stack.push(start);
    while (stack.length > 0) {
      const i = stack.pop()!;
      const c = i % cols;
      const r = (i - c) / cols;
      n++;
      c0 = Math.min(c0, c);
      r0 = Math.min(r0, r);
      c1 = Math.max(c1, c + 1);
      r1 = Math.max(r1, r + 1);
      for (let dr = -1; dr <= 1; dr++) {
        const rr = r + dr;
        if (rr < 0 || rr >= rows) continue;
        for (let dc = -1; dc <= 1; dc++) {
          const cc = c + dc;
          if (cc < 0 || cc >= cols) continue;
          const j = rr * cols + cc;
          if (hot[j] && !seen[j]) {
            seen[j] = 1;
            stack.push(j);
          }
        }
      }
    }
    if (!best || n > best.n) best = { c0, r0, c1, r1, n };
  }
  if (!best) return undefined;
  if (best.n < MIN_HOT_SHARE * (best.c1 - best.c0) * (best.r1 - best.r0)) return undefined;
  const x = best.c0 * CELL;
  const y = best.r0 * CELL;
  const w = (Math.min(width, best.c1 * CELL) - x) & ~1;
  const h = (Math.min(height, best.r1 * CELL) - y) & ~1;
  if (w <= 0 || h <= 0 || w * h < MIN_VIDEO_PIXELS) return undefined;
  return { x, y, w, h };
}

/** Intersection over union of two rects: 1 the same, 0 apart. */
export function overlap(a: Rect, b: Rect): number {
  const iw = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
  const ih = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
  if (iw <= 0 || ih <= 0) return 0;
  const i = iw * ih;
  return i / (a.w * a.h + b.w * b.h - i);
}
