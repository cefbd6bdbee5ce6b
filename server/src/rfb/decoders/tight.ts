/**
 * Tight (encoding 7, as TightVNC defined it and TigerVNC speaks it). Each rectangle starts
 * with a compression-control byte: its low four bits reset zlib streams 0–3, its high four
 * bits say what follows:
 * - 1000 fill: one TPIXEL for the whole rectangle;
 * - 1001 JPEG: never accepted here. JPEG is lossy and we send no JPEG quality-level
 *   pseudo-encoding, so a server that follows the protocol does not send it (and sharp,
 *   the only JPEG decoder at hand, decodes asynchronously, which this state machine is not);
 * - 0ksss basic: stream s (0–3); with bit 6 (k) a filter byte follows: 0 copy, 1 palette
 *   (U8 colours-1, the palette's TPIXELs, then indices: 1 bit a pixel for ≤ 2 colours with
 *   rows padded to a byte, else 1 byte), 2 gradient (each component the difference from
 *   left + above - above-left, clamped). Data of fewer than 12 bytes comes as is; longer
 *   data comes as a compact length (1–3 bytes, 7 bits each, the third with 8) and that
 *   many bytes of the chosen zlib stream.
 * With our pixel format (32 bpp, depth 24, colours in the low three bytes) a TPIXEL is the
 * three bytes R, G, B.
 *
 * Bounds: the whole rectangle is checked as soon as its bytes are visible (an unknown mode
 * or filter, JPEG, a compressed length longer than the data can need); the stream inflates
 * to exactly the filter's data size and never more (a zip bomb stops there); a palette
 * index past the palette is an error.
 */
import { BYTES_PER_PIXEL } from '../constants.js';
import { RfbProtocolError } from '../errors.js';
import type { ByteQueue } from '../byte-queue.js';
import { assertInFramebuffer, type RectHeader } from '../rect.js';
import type { DecodeContext, RectDecoder, RectDecoderFactory } from './decoder.js';
import { RAW_BAND_BYTES } from './raw.js';

/** bytes of a TPIXEL in our pixel format */
const TPIXEL = 3;
/** data shorter than this is sent without compression */
const MIN_TO_COMPRESS = 12;
export const TIGHT_STREAMS = 4;

const Mode = { Fill: 0x8, Jpeg: 0x9 } as const;
const Filter = { Copy: 0, Palette: 1, Gradient: 2 } as const;

/** The layout of one Tight rectangle's body, known once its header bytes are visible. */
type TightBody =
  | { mode: 'fill'; total: number }
  | {
      mode: 'basic';
      stream: number;
      filter: number;
      /** a filter byte follows the control byte */
      filterByte: boolean;
      /** bytes of the compact length (0: the data is not compressed) */
      lengthBytes: number;
      /** bytes of filter data (inflated size) */
      dataSize: number;
      /** bytes of data on the wire (compressed or not) */
      wireLength: number;
      total: number;
    };

export const tightDecoder: RectDecoderFactory = (rect, ctx) => {
  assertInFramebuffer('Tight rectangle', rect.x, rect.y, rect.w, rect.h, ctx.width, ctx.height);
  return new TightDecoder(rect);
};

class TightDecoder implements RectDecoder {
  private body: TightBody | undefined;

  constructor(private readonly rect: RectHeader) {}

  decode(queue: ByteQueue, ctx: DecodeContext): boolean {
    this.body ??= readLayout(queue, this.rect);
    const body = this.body;
    if (body === undefined || queue.available < body.total) return false;
    const { w, h } = this.rect;
    const control = queue.readU8();
    for (let s = 0; s < TIGHT_STREAMS; s++) {
      if (control & (1 << s)) ctx.codecs.tight[s]?.reset();
    }
    if (body.mode === 'fill') {
      const rgb = Buffer.from(queue.read(TPIXEL));
      putRows(ctx, this.rect, fillRow(w, rgb));
      return true;
    }
    if (body.filterByte) queue.skip(1);
    const palette = body.filter === Filter.Palette ? readPalette(queue) : [];
    queue.skip(body.lengthBytes);
    const wire = queue.read(body.wireLength);
    let data = wire;
    if (body.lengthBytes > 0) {
      const stream = ctx.codecs.tight[body.stream];
      if (stream === undefined) throw new Error(`no Tight stream ${body.stream}`);
      data = stream.inflate(wire, body.dataSize);
      if (data.length !== body.dataSize) {
        throw new RfbProtocolError(
          'bad-tight',
          `Tight ${w}x${h} rectangle inflates to ${data.length} bytes, not the ${body.dataSize} its filter needs`,
        );
      }
    }
    putRows(
      ctx,
      this.rect,
      body.filter === Filter.Palette
        ? paletteRow(data, palette, w)
        : body.filter === Filter.Gradient
          ? gradientRow(data, w)
          : copyRow(data, w),
    );
    return true;
  }
}

/**
 * The body's layout from the bytes visible so far, or undefined until enough are. Throws
 * as soon as a visible byte is wrong.
 */
function readLayout(queue: ByteQueue, rect: RectHeader): TightBody | undefined {
  if (queue.available < 1) return undefined;
  const control = queue.peekU8();
  const mode = control >> 4;
  if (mode === Mode.Fill) return { mode: 'fill', total: 1 + TPIXEL };
  if (mode === Mode.Jpeg) {
    throw new RfbProtocolError(
      'bad-tight',
      'Tight rectangle in JPEG although we asked for no JPEG quality level',
    );
  }
  if (mode > Mode.Jpeg) {
    throw new RfbProtocolError(
      'bad-tight',
      `Tight rectangle with compression control 0x${control.toString(16)}: not fill, JPEG or basic`,
    );
  }
  const stream = mode & 0x3;
  const filterByte = (mode & 0x4) !== 0;
  let at = 1;
  let filter: number = Filter.Copy;
  if (filterByte) {
    if (queue.available < at + 1) return undefined;
    filter = queue.peekU8(at);
    at++;
    if (filter > Filter.Gradient) {
      throw new RfbProtocolError('bad-tight', `Tight rectangle with unknown filter ${filter}`);
    }
  }
  const { w, h } = rect;
  let dataSize = w * h * TPIXEL;
  if (filter === Filter.Palette) {
    if (queue.available < at + 1) return undefined;
    const colours = queue.peekU8(at) + 1;
    at += 1 + colours * TPIXEL;
    dataSize = colours <= 2 ? Math.ceil(w / 8) * h : w * h;
  }
  if (dataSize < MIN_TO_COMPRESS) {
    return {
      mode: 'basic',
      stream,
      filter,
      filterByte,
      lengthBytes: 0,
      dataSize,
      wireLength: dataSize,
      total: at + dataSize,
    };
  }
  const compact = peekCompactLength(queue, at);
  if (compact === undefined) return undefined;
  if (compact.value > maxCompressed(dataSize)) {
    throw new RfbProtocolError(
      'bad-tight',
      `Tight ${w}x${h} rectangle announces ${compact.value} compressed bytes for ${dataSize} bytes of data`,
    );
  }
  return {
    mode: 'basic',
    stream,
    filter,
    filterByte,
    lengthBytes: compact.bytes,
    dataSize,
    wireLength: compact.value,
    total: at + compact.bytes + compact.value,
  };
}

/** Compressed bytes accepted for `size` bytes of data: deflate's worst case, generously. */
function maxCompressed(size: number): number {
  return size + (size >> 8) + 1024;
}

/** Tight's compact length: 7 bits a byte while the top bit is set, the third byte all 8. */
function peekCompactLength(
  queue: ByteQueue,
  at: number,
): { value: number; bytes: number } | undefined {
  let value = 0;
  for (let i = 0; i < 3; i++) {
    if (queue.available < at + i + 1) return undefined;
    const b = queue.peekU8(at + i);
    if (i === 2) return { value: value | (b << 14), bytes: 3 };
    value |= (b & 0x7f) << (7 * i);
    if ((b & 0x80) === 0) return { value, bytes: i + 1 };
  }
  return undefined; // not reached: the third byte always ends it
}

function readPalette(queue: ByteQueue): Buffer[] {
  const colours = queue.readU8() + 1;
  const out: Buffer[] = [];
  for (let i = 0; i < colours; i++) out.push(Buffer.from(queue.read(TPIXEL)));
  return out;
}

/** Writes row `row` of the rectangle as R, G, B, X pixels at `out[at]`; rows come in order. */
type RowWriter = (row: number, out: Buffer, at: number) => void;

/**
 * Hand the sink the rectangle in bands of whole rows of about RAW_BAND_BYTES, so a large
 * rectangle (a full-screen fill) never costs a full-size pixel buffer.
 */
function putRows(ctx: DecodeContext, rect: RectHeader, write: RowWriter): void {
  const { x, y, w, h } = rect;
  if (w === 0 || h === 0) return;
  const rowBytes = w * BYTES_PER_PIXEL;
  const bandRows = Math.max(1, Math.floor(RAW_BAND_BYTES / rowBytes));
  const band = Buffer.allocUnsafe(Math.min(bandRows, h) * rowBytes);
  for (let first = 0; first < h; first += bandRows) {
    const rows = Math.min(bandRows, h - first);
    for (let i = 0; i < rows; i++) write(first + i, band, i * rowBytes);
    ctx.sink.putPixels(x, y + first, w, rows, band.subarray(0, rows * rowBytes));
  }
}

function setPixel(out: Buffer, o: number, src: Buffer, at: number): void {
  out[o] = src[at] as number;
  out[o + 1] = src[at + 1] as number;
  out[o + 2] = src[at + 2] as number;
  out[o + 3] = 0;
}

function fillRow(w: number, rgb: Buffer): RowWriter {
  return (_row, out, at) => {
    for (let col = 0; col < w; col++) setPixel(out, at + col * BYTES_PER_PIXEL, rgb, 0);
  };
}

function copyRow(data: Buffer, w: number): RowWriter {
  return (row, out, at) => {
    for (let col = 0; col < w; col++)
      setPixel(out, at + col * BYTES_PER_PIXEL, data, (row * w + col) * TPIXEL);
  };
}

function paletteRow(data: Buffer, palette: Buffer[], w: number): RowWriter {
  const entry = (index: number): Buffer => {
    const c = palette[index];
    if (c === undefined) {
      throw new RfbProtocolError(
        'bad-tight',
        `Tight rectangle uses palette index ${index} of a ${palette.length}-colour palette`,
      );
    }
    return c;
  };
  if (palette.length <= 2) {
    const stride = Math.ceil(w / 8);
    return (row, out, at) => {
      for (let col = 0; col < w; col++) {
        const bit = ((data[row * stride + (col >> 3)] as number) >> (7 - (col & 7))) & 1;
        setPixel(out, at + col * BYTES_PER_PIXEL, entry(bit), 0);
      }
    };
  }
  return (row, out, at) => {
    for (let col = 0; col < w; col++)
      setPixel(out, at + col * BYTES_PER_PIXEL, entry(data[row * w + col] as number), 0);
  };
}

/**
 * Undo the gradient filter: each component is (left + above - above-left, clamped to
 * 0–255) + the data, modulo 256; neighbours outside the rectangle count as 0.
 */
function gradientRow(data: Buffer, w: number): RowWriter {
  let above = Buffer.alloc(w * TPIXEL); // row -1: zeros
  let current = Buffer.alloc(w * TPIXEL);
  return (row, out, at) => {
    for (let col = 0; col < w; col++) {
      for (let c = 0; c < TPIXEL; c++) {
        const i = col * TPIXEL + c;
        const left = col > 0 ? (current[i - TPIXEL] as number) : 0;
        const up = above[i] as number;
        const upLeft = col > 0 ? (above[i - TPIXEL] as number) : 0;
        const predicted = Math.min(255, Math.max(0, left + up - upLeft));
        current[i] = (predicted + (data[row * w * TPIXEL + i] as number)) & 0xff;
      }
      setPixel(out, at + col * BYTES_PER_PIXEL, current, col * TPIXEL);
    }
    [above, current] = [current, above];
  };
}
