import type { Clock } from '../clock.js';
import { CELL, type Rect } from './dirty-grid.js';

/** rate (updates/s, decayed) at which a cell counts as "hot" (animated) */
const HOT_RATE = 3;
/** half-life of a cell's update rate, ms */
const RATE_HALF_LIFE_MS = 500;
/** a cell quiet this long has lost 15/16 of its rate: it no longer counts as hot (hotCells) */
const HOT_AGE_LIMIT_MS = 4 * RATE_HALF_LIFE_MS;

/** A snapshot of the hot cells of a desktop (CELL×CELL each). */
export interface HotCells {
  cols: number;
  rows: number;
  /** 1 where the cell is hot, row-major */
  hot: Uint8Array;
}

/**
 * How often each CELL×CELL cell of a desktop changes, decayed over time ("heat"): animated
 * regions (video, a spinner) go lossy, quiet ones lossless (docs/architecture.md, decision 6).
 * One per desktop, shared by its viewers.
 */
export class HeatMap {
  private cols = 0;
  private rows = 0;
  /** per cell: clock time of its last change, ms */
  private lastChange = new Float64Array(0);
  /** per cell: its update rate as of lastChange */
  private rate = new Float32Array(0);
  /**
   * Until when some cell may still be hot: a cell is hot only if a touch left its rate at
   * HOT_RATE or more, and not after HOT_AGE_LIMIT_MS (rates only decay between touches). Lets
   * hotCells() answer "none" without a pass over every cell on a desktop where nothing moves.
   */
  private mayBeHotUntil = -Infinity;

  constructor(private readonly clock: Clock) {}

  /** the framebuffer changed size: every cell starts cold */
  resize(width: number, height: number): void {
    this.cols = Math.ceil(width / CELL);
    this.rows = Math.ceil(height / CELL);
    this.lastChange = new Float64Array(this.cols * this.rows);
    this.rate = new Float32Array(this.cols * this.rows);
    this.mayBeHotUntil = -Infinity;
  }

  /** the pixels of `r` changed now */
  touch(r: Rect): void {
    const now = this.clock.now();
    const { c0, c1, r0, r1 } = cellSpan(r);
    // the cells of a region in motion changed together last time too: one decay for all
    let lastDt = -1;
    let decay = 1;
    for (let row = r0; row < r1; row++) {
      for (let c = c0; c < c1; c++) {
        const i = row * this.cols + c;
        const dt = now - this.lastChange[i]!;
        if (dt !== lastDt) {
          lastDt = dt;
          decay = Math.pow(0.5, dt / RATE_HALF_LIFE_MS);
        }
        const rate = this.rate[i]! * decay + 1;
        this.rate[i] = rate;
        this.lastChange[i] = now;
        if (rate >= HOT_RATE) this.mayBeHotUntil = now + HOT_AGE_LIMIT_MS;
      }
    }
  }

  /** is most of this rect changing several times a second? */
  isHot(r: Rect): boolean {
    const now = this.clock.now();
    const { c0, c1, r0, r1 } = cellSpan(r);
    let hot = 0;
    let total = 0;
    for (let row = r0; row < r1; row++) {
      for (let c = c0; c < c1; c++) {
        const i = row * this.cols + c;
        total++;
        const rate = this.rate[i]! * Math.pow(0.5, (now - this.lastChange[i]!) / RATE_HALF_LIFE_MS);
        if (rate >= HOT_RATE) hot++;
      }
    }
    return total > 0 && hot * 2 >= total;
  }

  /**
   * Which cells are hot now (1) or not (0), row by row: where video regions are looked for.
   * Undefined when none is (typing, a still screen), without looking at each cell.
   */
  hotCells(): HotCells | undefined {
    const now = this.clock.now();
    if (now >= this.mayBeHotUntil) return undefined;
    const hot = new Uint8Array(this.cols * this.rows);
    for (let i = 0; i < hot.length; i++) {
      const age = now - this.lastChange[i]!;
      if (
        age < HOT_AGE_LIMIT_MS &&
        this.rate[i]! * Math.pow(0.5, age / RATE_HALF_LIFE_MS) >= HOT_RATE
      )
        hot[i] = 1;
    }
    return { cols: this.cols, rows: this.rows, hot };
  }

  /** ms from the latest change of any cell of `r` to `now` */
  quietFor(r: Rect, now: number): number {
    let latest = 0;
    const { c0, c1, r0, r1 } = cellSpan(r);
    for (let row = r0; row < r1; row++) {
      for (let c = c0; c < c1; c++)
        latest = Math.max(latest, this.lastChange[row * this.cols + c]!);
    }
    return now - latest;
  }
}

/** The cells a rect touches: columns c0 until c1, rows r0 until r1. */
function cellSpan(r: Rect): { c0: number; c1: number; r0: number; r1: number } {
  return {
    c0: Math.floor(r.x / CELL),
    c1: Math.ceil((r.x + r.w) / CELL),
    r0: Math.floor(r.y / CELL),
    r1: Math.ceil((r.y + r.h) / CELL),
  };
}
