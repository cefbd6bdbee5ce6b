/**
 * Builders for ZRLE and Tight rectangles, written from the specs (RFC 6143 §7.7.6, the
 * Tight description of TightVNC/rfbproto), for the pixel format the client asks for:
 * CPIXEL and TPIXEL are the bytes R, G, B. Zlib data comes from a real, long-lived Node
 * deflate stream flushed with Z_SYNC_FLUSH after each rectangle, as servers do.
 */
import zlib from 'node:zlib';
import { cat, u32, u8, type WireRect } from './server-wire.js';

export type Rgb = [number, number, number];

/** One deflate stream of a server; `chunk` compresses the next rectangle's share. */
export class DeflateStream {
  private stream = zlib.createDeflate({ level: 6 });
  private out: Buffer[] = [];

  constructor() {
    this.stream.on('data', (c: Buffer) => this.out.push(c));
  }

  chunk(data: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.stream.write(data, (err) => {
        if (err) reject(err);
      });
      this.stream.flush(zlib.constants.Z_SYNC_FLUSH, () => {
        resolve(Buffer.concat(this.out.splice(0)));
      });
    });
  }

  /** Start over (Tight's reset bit): the next chunk begins with a zlib header. */
  reset(): void {
    this.stream.close();
    this.stream = zlib.createDeflate({ level: 6 });
    this.stream.on('data', (c: Buffer) => this.out.push(c));
  }

  close(): void {
    this.stream.close();
  }
}

export const rgb = (c: Rgb): Buffer => Buffer.from(c);

/** w×h pixels (row-major) to the sink's R, G, B, X bytes with X = 0, as the decoders write */
export function toRgbx(pixels: Rgb[]): Buffer {
  const out = Buffer.alloc(pixels.length * 4);
  pixels.forEach((p, i) => out.set(p, i * 4));
  return out;
}

/** A run length as ZRLE writes it: (length - 1) as 255s and a final byte below 255 */
export function runLength(length: number): Buffer {
  const bytes: number[] = [];
  let left = length - 1;
  while (left >= 255) {
    bytes.push(255);
    left -= 255;
  }
  bytes.push(left);
  return Buffer.from(bytes);
}

export const zrle = {
  raw: (pixels: Rgb[]): Buffer => cat(u8(0), ...pixels.map(rgb)),
  solid: (c: Rgb): Buffer => cat(u8(1), rgb(c)),
  /** packed palette: 2–16 colours, indices packed MSB first, rows padded to a byte */
  packed(palette: Rgb[], indices: number[], tw: number): Buffer {
    const bits = palette.length === 2 ? 1 : palette.length <= 4 ? 2 : 4;
    const rows: Buffer[] = [];
    for (let at = 0; at < indices.length; at += tw) {
      const row = indices.slice(at, at + tw);
      const bytes = Buffer.alloc(Math.ceil((row.length * bits) / 8));
      row.forEach((idx, col) => {
        const bit = col * bits;
        bytes[bit >> 3] = (bytes[bit >> 3] as number) | (idx << (8 - bits - (bit & 7)));
      });
      rows.push(bytes);
    }
    return cat(u8(palette.length), ...palette.map(rgb), ...rows);
  },
  plainRle: (runs: [Rgb, number][]): Buffer =>
    cat(u8(128), ...runs.map(([c, n]) => cat(rgb(c), runLength(n)))),
  /** palette RLE: runs of [index, length]; length 1 is written as a lone index */
  paletteRle: (palette: Rgb[], runs: [number, number][]): Buffer =>
    cat(
      u8(128 + palette.length),
      ...palette.map(rgb),
      ...runs.map(([i, n]) => (n === 1 ? u8(i) : cat(u8(i | 0x80), runLength(n)))),
    ),
  rect: (x: number, y: number, w: number, h: number, compressed: Buffer): WireRect => ({
    x,
    y,
    w,
    h,
    encoding: 16,
    body: cat(u32(compressed.length), compressed),
  }),
};

/** Tight's compact length: 7 bits a byte, the top bit says another follows (third: 8 bits) */
export function compactLength(n: number): Buffer {
  if (n < 0x80) return u8(n);
  if (n < 0x4000) return Buffer.from([(n & 0x7f) | 0x80, n >> 7]);
  return Buffer.from([(n & 0x7f) | 0x80, ((n >> 7) & 0x7f) | 0x80, n >> 14]);
}

export const tight = {
  rect: (x: number, y: number, w: number, h: number, body: Buffer): WireRect => ({
    x,
    y,
    w,
    h,
    encoding: 7,
    body,
  }),
  fill: (c: Rgb, resets = 0): Buffer => cat(u8(0x80 | resets), rgb(c)),
  /**
   * A basic-compression body: control (stream, filter flag, resets), filter byte and palette
   * when given, then `data` as is (under 12 bytes) or as compact length + `compressed`.
   */
  basic(opts: {
    stream: number;
    resets?: number;
    filter?: number;
    palette?: Rgb[];
    data: Buffer;
    compressed?: Buffer;
  }): Buffer {
    const withFilter = opts.filter !== undefined;
    const control = (opts.stream << 4) | (withFilter ? 0x40 : 0) | (opts.resets ?? 0);
    const parts: Buffer[] = [u8(control)];
    if (withFilter) parts.push(u8(opts.filter ?? 0));
    if (opts.palette) parts.push(u8(opts.palette.length - 1), ...opts.palette.map(rgb));
    if (opts.data.length < 12) parts.push(opts.data);
    else {
      const z = opts.compressed ?? Buffer.alloc(0);
      parts.push(compactLength(z.length), z);
    }
    return cat(...parts);
  },
  copyData: (pixels: Rgb[]): Buffer => cat(...pixels.map(rgb)),
  /** palette indices: 1 bit a pixel (rows padded) for ≤ 2 colours, else a byte */
  paletteData(colours: number, indices: number[], w: number): Buffer {
    if (colours > 2) return Buffer.from(indices);
    const stride = Math.ceil(w / 8);
    const h = indices.length / w;
    const out = Buffer.alloc(stride * h);
    indices.forEach((idx, i) => {
      const row = Math.floor(i / w);
      const col = i % w;
      if (idx)
        out[row * stride + (col >> 3)] =
          (out[row * stride + (col >> 3)] as number) | (0x80 >> (col & 7));
    });
    return out;
  },
  /** the gradient filter: each component minus (left + above - above-left, clamped), mod 256 */
  gradientData(pixels: Rgb[], w: number): Buffer {
    const out = Buffer.alloc(pixels.length * 3);
    const at = (col: number, row: number, c: number): number =>
      col < 0 || row < 0 ? 0 : ((pixels[row * w + col] as Rgb)[c] as number);
    pixels.forEach((p, i) => {
      const row = Math.floor(i / w);
      const col = i % w;
      for (let c = 0; c < 3; c++) {
        const pred = Math.min(
          255,
          Math.max(0, at(col - 1, row, c) + at(col, row - 1, c) - at(col - 1, row - 1, c)),
        );
        out[i * 3 + c] = ((p[c] as number) - pred) & 0xff;
      }
    });
    return out;
  },
};
