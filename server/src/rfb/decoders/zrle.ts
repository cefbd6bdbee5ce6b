/**
 * ZRLE (encoding 16, RFC 6143 §7.7.6): U32 length, then that many bytes of the connection's
 * one zlib stream. Inflated, they are the rectangle's 64×64 tiles, left to right and top to
 * bottom, each a subencoding byte and its data, pixels as CPIXELs: with our pixel format
 * (32 bpp, depth 24, colours in the low three bytes, little-endian) a CPIXEL is the three
 * bytes R, G, B.
 *
 * Bounds: the compressed length may be at most what the worst-case tiles of this rectangle
 * take plus deflate's overhead, and at most limits.maxCompressedRect (it is held whole); the inflated data may be at most those tiles (a zip bomb
 * stops there) and must be exactly the tiles: a palette index past the palette, a run past
 * the tile, an unused subencoding, data missing or left over is a protocol error.
 */
import { BYTES_PER_PIXEL } from '../constants.js';
import { RfbProtocolError } from '../errors.js';
import type { ByteQueue } from '../byte-queue.js';
import { assertInFramebuffer, type RectHeader } from '../rect.js';
import type { DecodeContext, RectDecoder, RectDecoderFactory } from './decoder.js';

export const ZRLE_TILE = 64;
/** bytes of a CPIXEL in our pixel format */
const CPIXEL = 3;
const LENGTH_FIELD = 4;

const Sub = {
  Raw: 0,
  Solid: 1,
  PackedPaletteMax: 16,
  PlainRle: 128,
  PaletteRleMin: 130,
} as const;

/**
 * Most bytes the tiles of a w×h rectangle can take inflated: per tile a subencoding byte
 * and at most a 127-colour palette, per pixel at most 4 bytes (plain RLE with runs of one:
 * a CPIXEL and a run-length byte).
 */
export function zrleMaxInflated(w: number, h: number): number {
  const tiles = Math.ceil(w / ZRLE_TILE) * Math.ceil(h / ZRLE_TILE);
  return tiles * (1 + 127 * CPIXEL) + w * h * (CPIXEL + 1);
}

/** Most compressed bytes accepted for that: deflate's stored blocks add 5 bytes a 64 KiB, flushes a few. */
function maxCompressed(inflated: number): number {
  return inflated + Math.ceil(inflated / 16_384) * 5 + 1024;
}

export const zrleDecoder: RectDecoderFactory = (rect, ctx) => {
  assertInFramebuffer('ZRLE rectangle', rect.x, rect.y, rect.w, rect.h, ctx.width, ctx.height);
  return new ZrleDecoder(rect);
};

class ZrleDecoder implements RectDecoder {
  private length: number | undefined;

  constructor(private readonly rect: RectHeader) {}

  decode(queue: ByteQueue, ctx: DecodeContext): boolean {
    const { w, h } = this.rect;
    const maxInflated = zrleMaxInflated(w, h);
    if (this.length === undefined) {
      if (queue.available < LENGTH_FIELD) return false;
      const length = queue.readU32();
      if (length > maxCompressed(maxInflated)) {
        throw new RfbProtocolError(
          'bad-zrle',
          `ZRLE ${w}x${h} rectangle announces ${length} compressed bytes, more than its tiles can take`,
        );
      }
      if (length > ctx.limits.maxCompressedRect) {
        throw new RfbProtocolError(
          'bad-zrle',
          `ZRLE ${w}x${h} rectangle announces ${length} compressed bytes, over the ${ctx.limits.maxCompressedRect}-byte limit`,
        );
      }
      this.length = length;
    }
    if (queue.available < this.length) return false;
    const compressed = queue.read(this.length);
    if (w === 0 || h === 0) {
      // nothing to draw; a server may still have flushed the stream
      if (compressed.length > 0) ctx.codecs.zrle.inflate(compressed, 0);
      return true;
    }
    const data = ctx.codecs.zrle.inflate(compressed, maxInflated);
    decodeTiles(this.rect, data, ctx);
    return true;
  }
}

/** Reads the inflated tiles, handing the sink one band of tile rows at a time. */
function decodeTiles(rect: RectHeader, data: Buffer, ctx: DecodeContext): void {
  const { x, y, w, h } = rect;
  const r = new TileReader(data);
  const band = Buffer.allocUnsafe(w * Math.min(ZRLE_TILE, h) * BYTES_PER_PIXEL);
  const tile = Buffer.allocUnsafe(ZRLE_TILE * ZRLE_TILE * BYTES_PER_PIXEL);
  for (let ty = 0; ty < h; ty += ZRLE_TILE) {
    const th = Math.min(ZRLE_TILE, h - ty);
    for (let tx = 0; tx < w; tx += ZRLE_TILE) {
      const tw = Math.min(ZRLE_TILE, w - tx);
      decodeTile(r, tile, tw, th);
      const tileRow = tw * BYTES_PER_PIXEL;
      for (let row = 0; row < th; row++)
        tile.copy(band, (row * w + tx) * BYTES_PER_PIXEL, row * tileRow, (row + 1) * tileRow);
    }
    ctx.sink.putPixels(x, y + ty, w, th, band.subarray(0, w * th * BYTES_PER_PIXEL));
  }
  if (r.pos !== data.length) {
    throw new RfbProtocolError(
      'bad-zrle',
      `ZRLE ${w}x${h} rectangle has ${data.length - r.pos} bytes after its last tile`,
    );
  }
}

/** Decode one tw×th tile into `tile`, rows packed (stride tw pixels). */
function decodeTile(r: TileReader, tile: Buffer, tw: number, th: number): void {
  const sub = r.u8();
  const put = (i: number, rgb: number): void => {
    const o = i * BYTES_PER_PIXEL;
    tile[o] = rgb & 0xff;
    tile[o + 1] = (rgb >> 8) & 0xff;
    tile[o + 2] = (rgb >> 16) & 0xff;
    tile[o + 3] = 0;
  };
  const n = tw * th;
  if (sub === Sub.Raw) {
    for (let i = 0; i < n; i++) put(i, r.cpixel());
  } else if (sub === Sub.Solid) {
    const c = r.cpixel();
    for (let i = 0; i < n; i++) put(i, c);
  } else if (sub <= Sub.PackedPaletteMax) {
    const palette = r.palette(sub);
    const bits = sub === 2 ? 1 : sub <= 4 ? 2 : 4;
    const mask = (1 << bits) - 1;
    for (let row = 0; row < th; row++) {
      let byte = 0;
      let left = 0; // bits left in byte; each row starts on a fresh byte
      for (let col = 0; col < tw; col++) {
        if (left === 0) {
          byte = r.u8();
          left = 8;
        }
        left -= bits;
        put(row * tw + col, paletteEntry(palette, (byte >> left) & mask));
      }
    }
  } else if (sub === Sub.PlainRle) {
    for (let i = 0; i < n;) {
      const c = r.cpixel();
      const run = r.runLength(n - i);
      for (const end = i + run; i < end; i++) put(i, c);
    }
  } else if (sub >= Sub.PaletteRleMin) {
    const palette = r.palette(sub - 128);
    for (let i = 0; i < n;) {
      const b = r.u8();
      const c = paletteEntry(palette, b & 0x7f);
      const run = b & 0x80 ? r.runLength(n - i) : 1;
      for (const end = i + run; i < end; i++) put(i, c);
    }
  } else {
    throw new RfbProtocolError('bad-zrle', `ZRLE tile uses the unused subencoding ${sub}`);
  }
}

function paletteEntry(palette: number[], index: number): number {
  const c = palette[index];
  if (c === undefined) {
    throw new RfbProtocolError(
      'bad-zrle',
      `ZRLE tile uses palette index ${index} of a ${palette.length}-colour palette`,
    );
  }
  return c;
}

/** A cursor over the inflated tile data; running past its end is a protocol error. */
class TileReader {
  pos = 0;

  constructor(private readonly data: Buffer) {}

  u8(): number {
    const b = this.data[this.pos];
    if (b === undefined) throw truncated();
    this.pos++;
    return b;
  }

  /** a CPIXEL as 0xBBGGRR */
  cpixel(): number {
    if (this.pos + CPIXEL > this.data.length) throw truncated();
    const d = this.data;
    const p = this.pos;
    this.pos += CPIXEL;
    return (d[p] as number) | ((d[p + 1] as number) << 8) | ((d[p + 2] as number) << 16);
  }

  palette(size: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < size; i++) out.push(this.cpixel());
    return out;
  }

  /** 1 + the sum of bytes up to and including the first that is not 255; at most `left` */
  runLength(left: number): number {
    let run = 1;
    for (;;) {
      const b = this.u8();
      run += b;
      if (run > left) {
        throw new RfbProtocolError(
          'bad-zrle',
          `ZRLE run of at least ${run} pixels is longer than the ${left} left in its tile`,
        );
      }
      if (b !== 255) return run;
    }
  }
}

function truncated(): RfbProtocolError {
  return new RfbProtocolError('bad-zrle', 'ZRLE tile data ends before its last tile');
}
