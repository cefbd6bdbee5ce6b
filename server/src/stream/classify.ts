/**
 * Content analysis of one rectangle of RGBX pixels, to pick its codec (docs/architecture.md,
 * decision 6): one colour → a fill; few colours (text, UI) → lossless palette; many colours →
 * photo-like.
 */
export const MAX_PALETTE = 256;

export type Analysis =
  | { kind: 'solid'; r: number; g: number; b: number }
  | { kind: 'palette'; palette: Uint32Array; indices: Uint8Array }
  | { kind: 'many' };

/**
 * `pixels` is packed RGBX (stride w*4). The palette keys are 0xRRGGBB. Stops counting as soon
 * as it passes `maxColours`, so photo-like rects cost one partial pass.
 *
 * Each pixel loop is a function of its own that returns a number: V8 compiles a long loop on
 * the stack (OSR) while the code after it has not run yet, and such code bails out to the
 * interpreter every time it reaches a comparison or a `new` it has no type feedback for (seen
 * with `--trace-deopt` on a window drag: 110 bail-outs of the one-function version, each
 * finishing its rect's pixels in the interpreter).
 */
export function analyse(
  pixels: Uint8Array,
  w: number,
  h: number,
  maxColours = MAX_PALETTE,
): Analysis {
  const n = w * h;
  const p32 = new Uint32Array(pixels.buffer, pixels.byteOffset, n);
  const first = p32[0]! & 0xffffff;
  if (runLength(p32, first, n) === n)
    return { kind: 'solid', r: first & 0xff, g: (first >>> 8) & 0xff, b: (first >>> 16) & 0xff };
  const index = new Map<number, number>();
  const indices = new Uint8Array(n);
  if (!indexColours(p32, n, maxColours, index, indices)) return { kind: 'many' };
  return { kind: 'palette', palette: paletteOf(index), indices };
}

/** How many pixels from the first are `colour` (RGB, X ignored). */
function runLength(p32: Uint32Array, colour: number, n: number): number {
  let i = 1;
  while (i < n && (p32[i]! & 0xffffff) === colour) i++;
  return i;
}

/**
 * Fill `indices` with each pixel's place in `index` (colour → place, added in order of first
 * appearance); false as soon as there are more than `maxColours`.
 */
function indexColours(
  p32: Uint32Array,
  n: number,
  maxColours: number,
  index: Map<number, number>,
  indices: Uint8Array,
): boolean {
  let last = -1;
  let lastIdx = 0;
  for (let k = 0; k < n; k++) {
    const c = p32[k]! & 0xffffff;
    if (c !== last) {
      let idx = index.get(c);
      if (idx === undefined) {
        if (index.size >= maxColours) return false;
        idx = index.size;
        index.set(c, idx);
      }
      last = c;
      lastIdx = idx;
    }
    indices[k] = lastIdx;
  }
  return true;
}

function paletteOf(index: Map<number, number>): Uint32Array {
  const palette = new Uint32Array(index.size);
  for (const [c, idx] of index) palette[idx] = c;
  return palette;
}

/**
 * Copy a w×h window out of a framebuffer (RGBX, stride fbWidth*4) into a packed buffer:
 * `into` when given (w*h*4 bytes, reused by its owner), else a new one.
 */
export function extract(
  fb: Buffer,
  fbWidth: number,
  x: number,
  y: number,
  w: number,
  h: number,
  into?: Buffer,
): Buffer {
  if (into && into.length !== w * h * 4)
    throw new RangeError(`${into.length} bytes for a ${w}x${h} window`);
  const out = into ?? Buffer.allocUnsafe(w * h * 4);
  if (x === 0 && w === fbWidth) {
    fb.copy(out, 0, y * w * 4, (y + h) * w * 4); // whole rows: one copy
    return out;
  }
  const rowBytes = w * 4;
  for (let row = 0; row < h; row++) {
    const src = ((y + row) * fbWidth + x) * 4;
    fb.copy(out, row * rowBytes, src, src + rowBytes);
  }
  return out;
}
