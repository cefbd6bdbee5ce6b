/**
 * A region kept as a grid of CELL×CELL cells: constant memory per viewer whatever the damage
 * (docs/architecture.md, decision 5: a viewer that falls behind accumulates a region, never a
 * queue).
 */
export const CELL = 16; // pixels per cell side

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** w×h pixels copied from (srcX, srcY) to (x, y): an RFB CopyRect, or a detected move */
export interface CopyOp extends Rect {
  srcX: number;
  srcY: number;
}

/** Up to this many damage rects are kept exactly; beyond, the cell grid alone describes it. */
const MAX_EXACT = 64;
/** fixed per-rect overhead in pixels when merging exact rects (guacd's BASE_COST) */
const EXACT_RECT_COST = 4096;

/**
 * The CELL×CELL cells of a width×height framebuffer that lie wholly inside `r` (a cell cut by
 * the framebuffer's edge counts when `r` reaches that edge): columns c0 until c1, rows r0
 * until r1.
 */
export function cellsInside(
  r: Rect,
  width: number,
  height: number,
): { c0: number; c1: number; r0: number; r1: number } {
  return {
    c0: Math.ceil(Math.max(0, r.x) / CELL),
    r0: Math.ceil(Math.max(0, r.y) / CELL),
    c1: r.x + r.w >= width ? Math.ceil(width / CELL) : Math.floor((r.x + r.w) / CELL),
    r1: r.y + r.h >= height ? Math.ceil(height / CELL) : Math.floor((r.y + r.h) / CELL),
  };
}

export class DirtyGrid {
  cols: number;
  rows: number;
  cells: Uint8Array;
  private count = 0;
  /**
   * The damage as marked, while it is a few rects (typing: a glyph and the cursor), so small
   * updates are sent at their size and not rounded out to whole cells. null = too many.
   */
  private exact: Rect[] | null;

  /**
   * `keepExact` false: cells only (a region whose bookkeeping is cell by cell, like the lossy
   * cells waiting for a refresh, where clearing one cell must clear it from toRects() too).
   */
  constructor(
    public width: number,
    public height: number,
    private readonly keepExact = true,
  ) {
    this.exact = keepExact ? [] : null;
    this.cols = Math.ceil(width / CELL);
    this.rows = Math.ceil(height / CELL);
    this.cells = new Uint8Array(this.cols * this.rows);
  }

  get empty(): boolean {
    return this.count === 0;
  }

  resize(width: number, height: number): void {
    this.width = width;
    this.height = height;
    this.cols = Math.ceil(width / CELL);
    this.rows = Math.ceil(height / CELL);
    this.cells = new Uint8Array(this.cols * this.rows);
    this.count = 0;
    this.exact = this.keepExact ? [] : null;
  }

  private span(r: Rect): [number, number, number, number] | undefined {
    const x0 = Math.max(0, r.x);
    const y0 = Math.max(0, r.y);
    const x1 = Math.min(this.width, r.x + r.w);
    const y1 = Math.min(this.height, r.y + r.h);
    if (x1 <= x0 || y1 <= y0) return undefined;
    return [
      Math.floor(x0 / CELL),
      Math.floor(y0 / CELL),
      Math.ceil(x1 / CELL),
      Math.ceil(y1 / CELL),
    ];
  }

  markAll(): void {
    this.cells.fill(1);
    this.count = this.cells.length;
    this.exact = null;
  }

  mark(r: Rect): void {
    const s = this.span(r);
    if (!s) return;
    if (this.exact) {
      const x = Math.max(0, r.x);
      const y = Math.max(0, r.y);
      this.exact.push({
        x,
        y,
        w: Math.min(this.width, r.x + r.w) - x,
        h: Math.min(this.height, r.y + r.h) - y,
      });
      if (this.exact.length > MAX_EXACT) this.exact = null;
    }
    const [c0, r0, c1, r1] = s;
    for (let row = r0; row < r1; row++) {
      const base = row * this.cols;
      for (let c = c0; c < c1; c++) {
        if (!this.cells[base + c]) {
          this.cells[base + c] = 1;
          this.count++;
        }
      }
    }
  }

  /** clear only the cells (and exact rects) that lie entirely inside r */
  clearInside(r: Rect): void {
    if (this.exact)
      this.exact = this.exact.filter(
        (e) => !(e.x >= r.x && e.y >= r.y && e.x + e.w <= r.x + r.w && e.y + e.h <= r.y + r.h),
      );
    const { c0, c1, r0, r1 } = cellsInside(r, this.width, this.height);
    for (let row = r0; row < r1; row++) {
      const base = row * this.cols;
      for (let c = c0; c < c1; c++) {
        if (this.cells[base + c]) {
          this.cells[base + c] = 0;
          this.count--;
        }
      }
    }
  }

  intersects(r: Rect): boolean {
    if (this.count === 0) return false;
    const s = this.span(r);
    if (!s) return false;
    const [c0, r0, c1, r1] = s;
    for (let row = r0; row < r1; row++) {
      const base = row * this.cols;
      for (let c = c0; c < c1; c++) if (this.cells[base + c]) return true;
    }
    return false;
  }

  /** the dirty parts of r, as pixel rects (one per run of dirty cells in a cell row) */
  dirtyWithin(r: Rect): Rect[] {
    const s = this.count === 0 ? undefined : this.span(r);
    if (!s) return [];
    const [c0, r0, c1, r1] = s;
    const out: Rect[] = [];
    for (let row = r0; row < r1; row++) {
      const base = row * this.cols;
      let c = c0;
      while (c < c1) {
        if (!this.cells[base + c]) {
          c++;
          continue;
        }
        const start = c;
        while (c < c1 && this.cells[base + c]) c++;
        const x0 = Math.max(r.x, start * CELL);
        const y0 = Math.max(r.y, row * CELL);
        const x1 = Math.min(r.x + r.w, c * CELL);
        const y1 = Math.min(r.y + r.h, (row + 1) * CELL);
        if (x1 > x0 && y1 > y0) out.push({ x: x0, y: y0, w: x1 - x0, h: y1 - y0 });
      }
    }
    return out;
  }

  clear(): void {
    if (this.count) this.cells.fill(0);
    this.count = 0;
    this.exact = this.keepExact ? [] : null;
  }

  /**
   * Dirty cells as a few rectangles in pixels: horizontal runs per cell row, runs with the
   * same columns stacked vertically, then neighbours merged when the union wastes little
   * (cost model after guacd: each rect costs a fixed overhead plus its area).
   */
  toRects(): Rect[] {
    if (this.count === 0) return [];
    if (this.exact && this.exact.length) {
      const merged = mergeRects(
        this.exact.map((e) => ({ c0: e.x, c1: e.x + e.w, r0: e.y, r1: e.y + e.h })),
        EXACT_RECT_COST,
      );
      return merged.map((m) => ({ x: m.c0, y: m.r0, w: m.c1 - m.c0, h: m.r1 - m.r0 }));
    }
    type CellRect = { c0: number; c1: number; r0: number; r1: number };
    const open = new Map<string, CellRect>();
    const done: CellRect[] = [];
    for (let row = 0; row < this.rows; row++) {
      const base = row * this.cols;
      const seen = new Set<string>();
      let c = 0;
      while (c < this.cols) {
        if (!this.cells[base + c]) {
          c++;
          continue;
        }
        const start = c;
        while (c < this.cols && this.cells[base + c]) c++;
        const key = `${start}:${c}`;
        const prev = open.get(key);
        if (prev && prev.r1 === row) prev.r1 = row + 1;
        else {
          if (prev) done.push(prev);
          open.set(key, { c0: start, c1: c, r0: row, r1: row + 1 });
        }
        seen.add(key);
      }
      for (const [key, r] of open) {
        if (!seen.has(key)) {
          done.push(r);
          open.delete(key);
        }
      }
    }
    done.push(...open.values());
    const merged = mergeRects(done, RECT_COST);
    return merged.map((r) => {
      const x = r.c0 * CELL;
      const y = r.r0 * CELL;
      return {
        x,
        y,
        w: Math.min(this.width, r.c1 * CELL) - x,
        h: Math.min(this.height, r.r1 * CELL) - y,
      };
    });
  }
}

/** fixed per-rect overhead in cell units: one encode call costs about as much as ~16 cells of pixels */
const RECT_COST = 16;

/**
 * Merge boxes while the union costs no more than the parts (each box costs `overhead` plus
 * its area). Works on cell units or pixels alike.
 */
function mergeRects<T extends { c0: number; c1: number; r0: number; r1: number }>(
  rects: T[],
  overhead: number,
): T[] {
  const area = (r: T) => (r.c1 - r.c0) * (r.r1 - r.r0);
  let list = rects.slice();
  let changed = true;
  // O(n²) per pass; n stays small because runs were stacked first, and is capped below
  while (changed && list.length > 1) {
    changed = false;
    outer: for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const a = list[i]!;
        const b = list[j]!;
        const u = {
          ...a,
          c0: Math.min(a.c0, b.c0),
          c1: Math.max(a.c1, b.c1),
          r0: Math.min(a.r0, b.r0),
          r1: Math.max(a.r1, b.r1),
        };
        if (overhead + area(u) <= 2 * overhead + area(a) + area(b)) {
          list[i] = u;
          list.splice(j, 1);
          changed = true;
          break outer;
        }
      }
    }
    if (list.length > 256) {
      // pathological scatter: one bounding box is cheaper than hundreds of calls
      list = [
        list.reduce((a, b) => ({
          ...a,
          c0: Math.min(a.c0, b.c0),
          c1: Math.max(a.c1, b.c1),
          r0: Math.min(a.r0, b.r0),
          r1: Math.max(a.r1, b.r1),
        })),
      ];
    }
  }
  return list;
}
