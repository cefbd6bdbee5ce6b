import { endianness } from 'node:os';
import type { Rect } from '../dirty-grid.js';

/**
 * RGBX pictures to the I420 (YUV 4:2:0, BT.601 limited range) x264 encodes, done in the
 * gateway: ffmpeg then reads a tenth of the bytes of a downscaled 1080p picture through its
 * pipe and runs no scaling or conversion of its own (its CPU per 1080p picture fell from 6.6
 * to 2.6 ms, server/bench/video-picture-micro.mjs), and the region's pixels are read once,
 * straight from the mirror, instead of being copied out for the pipe first.
 */

/** How many times smaller each side of a region's coded picture is. */
export type Downscale = 1 | 2;

/** The coded picture of a w×h region: 1/downscale of each side, rounded up to even. */
export function codedSize(w: number, h: number, downscale: Downscale): { w: number; h: number } {
  const side = (n: number) => Math.max(2, Math.ceil(n / downscale / 2) * 2);
  return { w: side(w), h: side(h) };
}

/** Bytes of an I420 picture w×h (both even): a Y plane, then U and V at half each side. */
export function i420Bytes(w: number, h: number): number {
  return w * h + 2 * (w / 2) * (h / 2);
}

const LITTLE_ENDIAN = endianness() === 'LE';

/**
 * Convert `r` (inside an RGBX framebuffer `fbWidth` pixels wide, R in the lowest byte) to an
 * I420 picture of codedSize(r.w, r.h, downscale) in `out`. Downscaled, each coded pixel is
 * the mean of its 2×2 source pixels; each chroma sample is the mean of the pixels it covers.
 * Coded pixels past the region's right or bottom edge (a side of 4n+2 halved) repeat its last
 * column or row.
 */
export function rgbxToI420(
  fb: Buffer,
  fbWidth: number,
  r: Rect,
  downscale: Downscale,
  out: Buffer,
): Buffer {
  const { w: cw, h: ch } = codedSize(r.w, r.h, downscale);
  if (out.length !== i420Bytes(cw, ch))
    throw new RangeError(`${out.length} bytes for a ${cw}x${ch} I420 picture`);
  if (r.x < 0 || r.y < 0 || r.w <= 0 || r.h <= 0 || r.x + r.w > fbWidth)
    throw new RangeError(`region ${r.w}x${r.h}+${r.x}+${r.y} outside the framebuffer`);
  if ((r.y + r.h) * fbWidth * 4 > fb.length)
    throw new RangeError(`region ${r.w}x${r.h}+${r.x}+${r.y} outside the framebuffer`);
  const px =
    LITTLE_ENDIAN && fb.byteOffset % 4 === 0
      ? new Uint32Array(fb.buffer, fb.byteOffset, fb.length >> 2)
      : undefined;
  // 2×2 coded blocks (one chroma sample each) whose source lies wholly inside the region
  const span = 2 * downscale;
  const fullCols = px ? Math.floor(r.w / span) : 0;
  const fullRows = px ? Math.floor(r.h / span) : 0;
  if (px) {
    const job = { px, fbWidth, r, cw, cols: fullCols, rows: fullRows, out };
    const u = cw * ch;
    if (downscale === 2) halfBlocks(job, u, u + (cw / 2) * (ch / 2));
    else fullBlocks(job, u, u + (cw / 2) * (ch / 2));
  }
  // the rest (the edge blocks of a 4n+2 side, or everything when no 32-bit view is possible)
  for (let by = 0; by < ch / 2; by++)
    for (let bx = by < fullRows ? fullCols : 0; bx < cw / 2; bx++)
      edgeBlock(fb, fbWidth, r, downscale, cw, ch, bx, by, out);
  return out;
}

// BT.601 limited range in integers (the coefficients × 256):
//   Y = 16 + (66 R + 129 G + 25 B) / 256, U = 128 + (−38 R − 74 G + 112 B) / 256,
//   V = 128 + (112 R − 94 G − 18 B) / 256. Sums of n pixels are divided by 256 n, rounded.

/** The whole 2×2 coded blocks of a conversion: `cols` × `rows` of them from the top left. */
interface Blocks {
  /** the framebuffer as 32-bit pixels */
  px: Uint32Array;
  fbWidth: number;
  r: Rect;
  /** coded width */
  cw: number;
  cols: number;
  rows: number;
  out: Buffer;
}

/** Coded blocks at full size: each Y is one pixel, each chroma sample the sum of four. */
function fullBlocks(
  { px, fbWidth, r, cw, cols, rows, out }: Blocks,
  uBase: number,
  vBase: number,
): void {
  for (let by = 0; by < rows; by++) {
    let s0 = (r.y + 2 * by) * fbWidth + r.x;
    let s1 = s0 + fbWidth;
    let y0 = 2 * by * cw;
    let y1 = y0 + cw;
    let c = by * (cw / 2);
    for (let bx = 0; bx < cols; bx++) {
      const a = px[s0]!;
      const b = px[s0 + 1]!;
      const d = px[s1]!;
      const e = px[s1 + 1]!;
      out[y0] = luma(a & 0xff, (a >>> 8) & 0xff, (a >>> 16) & 0xff, 8);
      out[y0 + 1] = luma(b & 0xff, (b >>> 8) & 0xff, (b >>> 16) & 0xff, 8);
      out[y1] = luma(d & 0xff, (d >>> 8) & 0xff, (d >>> 16) & 0xff, 8);
      out[y1 + 1] = luma(e & 0xff, (e >>> 8) & 0xff, (e >>> 16) & 0xff, 8);
      // R and B of four pixels summed in one word (each at most 1020: no carry between them)
      const rb = (a & 0xff00ff) + (b & 0xff00ff) + (d & 0xff00ff) + (e & 0xff00ff);
      const g = ((a >>> 8) & 0xff) + ((b >>> 8) & 0xff) + ((d >>> 8) & 0xff) + ((e >>> 8) & 0xff);
      out[uBase + c] = chromaU(rb & 0xffff, g, rb >>> 16, 10);
      out[vBase + c] = chromaV(rb & 0xffff, g, rb >>> 16, 10);
      s0 += 2;
      s1 += 2;
      y0 += 2;
      y1 += 2;
      c++;
    }
  }
}

/** Coded blocks at half size: each Y is the sum of 2×2 pixels, each chroma sample of 4×4. */
function halfBlocks(
  { px, fbWidth, r, cw, cols, rows, out }: Blocks,
  uBase: number,
  vBase: number,
): void {
  for (let by = 0; by < rows; by++) {
    let s0 = (r.y + 4 * by) * fbWidth + r.x;
    let y0 = 2 * by * cw;
    let c = by * (cw / 2);
    for (let bx = 0; bx < cols; bx++) {
      const s1 = s0 + fbWidth;
      const s2 = s1 + fbWidth;
      const s3 = s2 + fbWidth;
      // each coded pixel: the R+B (one word, 16 bits each) and G<<8 sums of its 2×2 pixels
      let a = px[s0]!;
      let b = px[s0 + 1]!;
      let d = px[s1]!;
      let e = px[s1 + 1]!;
      const rbA = (a & 0xff00ff) + (b & 0xff00ff) + (d & 0xff00ff) + (e & 0xff00ff);
      const gA = (a & 0xff00) + (b & 0xff00) + (d & 0xff00) + (e & 0xff00);
      a = px[s0 + 2]!;
      b = px[s0 + 3]!;
      d = px[s1 + 2]!;
      e = px[s1 + 3]!;
      const rbB = (a & 0xff00ff) + (b & 0xff00ff) + (d & 0xff00ff) + (e & 0xff00ff);
      const gB = (a & 0xff00) + (b & 0xff00) + (d & 0xff00) + (e & 0xff00);
      a = px[s2]!;
      b = px[s2 + 1]!;
      d = px[s3]!;
      e = px[s3 + 1]!;
      const rbC = (a & 0xff00ff) + (b & 0xff00ff) + (d & 0xff00ff) + (e & 0xff00ff);
      const gC = (a & 0xff00) + (b & 0xff00) + (d & 0xff00) + (e & 0xff00);
      a = px[s2 + 2]!;
      b = px[s2 + 3]!;
      d = px[s3 + 2]!;
      e = px[s3 + 3]!;
      const rbD = (a & 0xff00ff) + (b & 0xff00ff) + (d & 0xff00ff) + (e & 0xff00ff);
      const gD = (a & 0xff00) + (b & 0xff00) + (d & 0xff00) + (e & 0xff00);
      out[y0] = luma(rbA & 0xffff, gA >>> 8, rbA >>> 16, 10);
      out[y0 + 1] = luma(rbB & 0xffff, gB >>> 8, rbB >>> 16, 10);
      out[y0 + cw] = luma(rbC & 0xffff, gC >>> 8, rbC >>> 16, 10);
      out[y0 + cw + 1] = luma(rbD & 0xffff, gD >>> 8, rbD >>> 16, 10);
      const rb = rbA + rbB + rbC + rbD;
      const g = (gA + gB + gC + gD) >>> 8;
      out[uBase + c] = chromaU(rb & 0xffff, g, rb >>> 16, 12);
      out[vBase + c] = chromaV(rb & 0xffff, g, rb >>> 16, 12);
      s0 += 4;
      y0 += 2;
      c++;
    }
  }
}

/** Y of sums of 2^(shift−8) pixels' R, G, B */
const luma = (r: number, g: number, b: number, shift: number): number =>
  ((66 * r + 129 * g + 25 * b + (1 << (shift - 1))) >> shift) + 16;
const chromaU = (r: number, g: number, b: number, shift: number): number =>
  ((-38 * r - 74 * g + 112 * b + (1 << (shift - 1))) >> shift) + 128;
const chromaV = (r: number, g: number, b: number, shift: number): number =>
  ((112 * r - 94 * g - 18 * b + (1 << (shift - 1))) >> shift) + 128;

/** One coded 2×2 block, byte by byte, its source clamped to the region. */
function edgeBlock(
  fb: Buffer,
  fbWidth: number,
  r: Rect,
  s: Downscale,
  cw: number,
  ch: number,
  bx: number,
  by: number,
  out: Buffer,
): void {
  let rs = 0;
  let gs = 0;
  let bs = 0;
  for (let dy = 0; dy < 2; dy++)
    for (let dx = 0; dx < 2; dx++) {
      const cx = 2 * bx + dx;
      const cy = 2 * by + dy;
      let pr = 0;
      let pg = 0;
      let pb = 0;
      for (let sy = 0; sy < s; sy++)
        for (let sx = 0; sx < s; sx++) {
          const x = r.x + Math.min(r.w - 1, cx * s + sx);
          const y = r.y + Math.min(r.h - 1, cy * s + sy);
          const o = (y * fbWidth + x) * 4;
          pr += fb[o]!;
          pg += fb[o + 1]!;
          pb += fb[o + 2]!;
        }
      const shift = s === 2 ? 10 : 8;
      out[cy * cw + cx] = luma(pr, pg, pb, shift);
      rs += pr;
      gs += pg;
      bs += pb;
    }
  const shift = s === 2 ? 12 : 10;
  const c = by * (cw / 2) + bx;
  out[cw * ch + c] = chromaU(rs, gs, bs, shift);
  out[cw * ch + (cw / 2) * (ch / 2) + c] = chromaV(rs, gs, bs, shift);
}
