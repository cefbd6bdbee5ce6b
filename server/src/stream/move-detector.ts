import type { CopyOp, Rect } from './dirty-grid.js';

/** rows that must match at one shift before it counts as a move */
const MIN_MOVED_ROWS = 8;
/** old rows remembered per distinct row content, bounding the vote count per changed row */
const MAX_CANDIDATES = 32;

/**
 * Vertical move (scroll) detection by row hashes, for RFB servers that send no CopyRect.
 * Keeps one 64-bit hash (two 32-bit lanes) per framebuffer row as of the last update; an
 * update's changed rows are hashed again and matched against the old rows. Equal hashes mean
 * equal content, so whichever row matches is a valid copy source.
 */
export class MoveDetector {
  private a: Uint32Array;
  private b: Uint32Array;
  pending: Rect[] = [];

  constructor(
    private readonly width: number,
    private readonly height: number,
    fb: Buffer,
  ) {
    this.a = new Uint32Array(height);
    this.b = new Uint32Array(height);
    for (let y = 0; y < height; y++) this.hashRow(fb, y, this.a, this.b);
  }

  private hashRow(fb: Buffer, y: number, a: Uint32Array, b: Uint32Array): void {
    const words = new Uint32Array(fb.buffer, fb.byteOffset + y * this.width * 4, this.width);
    let h1 = 0x811c9dc5;
    let h2 = 0x01000193;
    for (let i = 0; i < words.length; i++) {
      const w = words[i]! & 0xffffff; // the 4th byte is padding
      h1 = Math.imul(h1 ^ w, 0x01000193);
      h2 = Math.imul(h2 + w, 0x5bd1e995) ^ (h2 >>> 15);
    }
    a[y] = h1 >>> 0;
    b[y] = h2 >>> 0;
  }

  /** Split an update's rects into copies (moved rows) and plain damage. */
  detect(fb: Buffer, rects: Rect[]): { copies: CopyOp[]; damage: Rect[] } {
    let top = this.height;
    let bottom = 0;
    let left = this.width;
    let right = 0;
    for (const r of rects) {
      top = Math.min(top, r.y);
      bottom = Math.max(bottom, r.y + r.h);
      left = Math.min(left, r.x);
      right = Math.max(right, r.x + r.w);
    }
    const oldA = this.a;
    const oldB = this.b;
    const newA = oldA.slice();
    const newB = oldB.slice();
    for (let y = top; y < bottom; y++) this.hashRow(fb, y, newA, newB);
    this.a = newA;
    this.b = newB;
    // whole-width changes only (a scrolled console or page); narrow ones are not worth it
    if (right - left < this.width / 2 || bottom - top < MIN_MOVED_ROWS * 2)
      return { copies: [], damage: rects };
    // old rows by content; identical rows (blank lines, a glyph's flat rows) share an entry
    const where = new Map<string, number[]>();
    for (let y = 0; y < this.height; y++) {
      const k = `${oldA[y]}:${oldB[y]}`;
      const list = where.get(k);
      if (!list) where.set(k, [y]);
      else if (list.length < MAX_CANDIDATES) list.push(y);
    }
    const votes = new Map<number, number>();
    for (let y = top; y < bottom; y++) {
      if (newA[y] === oldA[y] && newB[y] === oldB[y]) continue;
      for (const from of where.get(`${newA[y]}:${newB[y]}`) ?? [])
        votes.set(from - y, (votes.get(from - y) ?? 0) + 1);
    }
    // the shift most changed rows agree on; ties go to the smaller move
    let dy = 0;
    let best = 0;
    for (const [d, n] of votes)
      if (d !== 0 && (n > best || (n === best && Math.abs(d) < Math.abs(dy)))) [dy, best] = [d, n];
    if (best < MIN_MOVED_ROWS) return { copies: [], damage: rects };
    const matches = (y: number) =>
      y + dy >= 0 && y + dy < this.height && newA[y] === oldA[y + dy] && newB[y] === oldB[y + dy];
    const copies: CopyOp[] = [];
    const damage: Rect[] = [];
    let y = top;
    while (y < bottom) {
      const start = y;
      const moved = matches(y);
      while (y < bottom && matches(y) === moved) y++;
      if (moved)
        copies.push({ srcX: 0, srcY: start + dy, x: 0, y: start, w: this.width, h: y - start });
      else damage.push({ x: left, y: start, w: right - left, h: y - start });
    }
    // applied in order on the client: when content moves down, copy the lowest run first
    if (dy < 0) copies.reverse();
    return { copies, damage };
  }
}
