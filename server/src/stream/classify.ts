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
  let i = 1;
  while (i < n && (p32[i]! & 0xffffff) === first) i++;
  if (i === n)
    return { kind: 'solid', r: first & 0xff, g: (first >>> 8) & 0xff, b: (first >>> 16) & 0xff };
  const index = new Map<number, number>();
  const indices = new Uint8Array(n);
  let last = -1;
  let lastIdx = 0;
  for (let k = 0; k < n; k++) {
    const c = p32[k]! & 0xffffff;
    if (c !== last) {
      let idx = index.get(c);
      if (idx === undefined) {
        if (index.size >= maxColours) return { kind: 'many' };
        idx = index.size;
        index.set(c, idx);
      }
      last = c;
      lastIdx = idx;
    }
    indices[k] = lastIdx;
  }
  const palette = new Uint32Array(index.size);
  for (const [c, idx] of index) palette[idx] = c;
  return { kind: 'palette', palette, indices };
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
