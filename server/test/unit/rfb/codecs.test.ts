/**
 * ZRLE and Tight decoding from hand-built byte streams: every subencoding and filter, the
 * connection-long zlib streams, any split of the bytes, and strict bounds (each bad byte a
 * clean RfbProtocolError, a zip bomb stopped at the rectangle's size).
 */
import zlib from 'node:zlib';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { RAW_BAND_BYTES } from '../../../src/rfb/decoders/raw.js';
import { RfbProtocolError } from '../../../src/rfb/errors.js';
import { DEFAULT_RFB_LIMITS } from '../../../src/rfb/types.js';
import { DeflateStream, tight, toRgbx, zrle, type Rgb } from './helpers/codec-wire.js';
import { bytewise, makeParser, runParser as runAny } from './helpers/run-parser.js';
import * as w from './helpers/server-wire.js';
import { FramebufferModel } from './helpers/sinks.js';

/** the client asked for both */
const ASKED = [7, 16];
const runParser = (chunks: Buffer[], width = 64, height = 48): ReturnType<typeof runAny> =>
  runAny(chunks, width, height, DEFAULT_RFB_LIMITS, ASKED);

const W = 64;
const H = 48;

const streams: DeflateStream[] = [];
function deflater(): DeflateStream {
  const d = new DeflateStream();
  streams.push(d);
  return d;
}
afterEach(() => {
  for (const d of streams.splice(0)) d.close();
});

function expectProtocolError(err: unknown, code: string, text?: RegExp): void {
  expect(err).toBeInstanceOf(RfbProtocolError);
  expect((err as RfbProtocolError).code).toBe(code);
  if (text) expect((err as Error).message).toMatch(text);
}

/** deterministic varied colours */
function colours(n: number, seed = 1): Rgb[] {
  return Array.from({ length: n }, (_, i) => [
    (i * 37 + seed * 11) & 0xff,
    (i * 91 + seed * 7) & 0xff,
    (i * 13 + seed * 29) & 0xff,
  ]);
}

/** Decode `stream` split into `chunks` on a fresh framebuffer; the model after it. */
function decode(chunks: Buffer[], width = W, height = H): { fb: FramebufferModel; error: unknown } {
  const fb = new FramebufferModel();
  fb.resize(width, height);
  const { parser } = makeParser(width, height, DEFAULT_RFB_LIMITS, fb, ASKED);
  let error: unknown;
  try {
    for (const c of chunks) parser.push(c);
  } catch (err) {
    error = err;
  }
  return { fb, error };
}

/** The framebuffer's rectangle as R, G, B, X bytes. */
function region(fb: FramebufferModel, x: number, y: number, rw: number, rh: number): Buffer {
  const out = Buffer.alloc(rw * rh * 4);
  for (let row = 0; row < rh; row++)
    fb.data.copy(
      out,
      row * rw * 4,
      ((y + row) * fb.width + x) * 4,
      ((y + row) * fb.width + x + rw) * 4,
    );
  return out;
}

/** Decode the stream whole, byte by byte and split at every offset: all alike. */
function expectSplitInvariant(stream: Buffer, width = W, height = H): FramebufferModel {
  const whole = decode([stream], width, height);
  expect(whole.error).toBeUndefined();
  const bytes = decode(bytewise(stream), width, height);
  expect(bytes.error).toBeUndefined();
  expect(bytes.fb.data.equals(whole.fb.data)).toBe(true);
  for (let cut = 1; cut < stream.length; cut += Math.max(1, Math.floor(stream.length / 50))) {
    const two = decode([stream.subarray(0, cut), stream.subarray(cut)], width, height);
    expect(two.error).toBeUndefined();
    expect(two.fb.data.equals(whole.fb.data)).toBe(true);
  }
  expect(whole.fb.updates).toBeGreaterThan(0);
  return whole.fb;
}

describe('ZRLE', () => {
  it('decodes each subencoding in its own tile, across a rect of 2×1 tiles plus edges', async () => {
    // 70×66: tiles 64×64, 6×64, 64×2, 6×2
    const rw = 70;
    const rh = 66;
    const tiles: { tw: number; th: number; body: (n: number) => [Buffer, Rgb[]] }[] = [];
    const expected: Rgb[] = Array.from({ length: rw * rh }, () => [0, 0, 0] as Rgb);
    const pal = colours(16, 3);
    const put = (tx: number, ty: number, tw: number, px: Rgb[]): void =>
      px.forEach((p, i) => (expected[(ty + Math.floor(i / tw)) * rw + tx + (i % tw)] = p));
    // tile (0,0) 64×64: palette RLE with a long run (over 255), singles and runs
    const t0Runs: [number, number][] = [
      [0, 1],
      [1, 300],
      [2, 1],
      [3, 2],
      [126, 4096 - 304],
    ];
    const bigPal = colours(127, 5);
    const t0 = zrle.paletteRle(bigPal, t0Runs);
    const t0px = t0Runs.flatMap(([i, n]) => Array.from({ length: n }, () => bigPal[i] as Rgb));
    put(0, 0, 64, t0px);
    // tile (64,0) 6×64: packed palette with 3 colours (2 bits, rows padded)
    const idx1 = Array.from({ length: 6 * 64 }, (_, i) => (i * 5 + (i >> 3)) % 3);
    const t1 = zrle.packed(pal.slice(0, 3), idx1, 6);
    put(
      64,
      0,
      6,
      idx1.map((i) => pal[i] as Rgb),
    );
    // tile (0,64) 64×2: plain RLE (runs crossing the row end)
    const t2Runs: [Rgb, number][] = [
      [[1, 2, 3], 70],
      [[250, 0, 9], 1],
      [[7, 7, 7], 57],
    ];
    const t2 = zrle.plainRle(t2Runs);
    put(
      0,
      64,
      64,
      t2Runs.flatMap(([c, n]) => Array.from({ length: n }, () => c)),
    );
    // tile (64,64) 6×2: raw
    const rawPx = colours(12, 9);
    const t3 = zrle.raw(rawPx);
    put(64, 64, 6, rawPx);
    void tiles;
    const z = deflater();
    const body = await z.chunk(w.cat(t0, t1, t2, t3));
    const stream = w.update([zrle.rect(10, 20, rw, rh, body)]);
    const fb = expectSplitInvariant(stream, 100, 100);
    expect(region(fb, 10, 20, rw, rh).equals(toRgbx(expected))).toBe(true);
  });

  it.each([
    [2, 1],
    [4, 2],
    [5, 4],
    [16, 4],
  ])('decodes a packed palette of %i colours (%i bits an index)', async (n) => {
    const pal = colours(n, n);
    const tw = 13; // odd width: each row ends mid-byte and is padded
    const th = 5;
    const idx = Array.from({ length: tw * th }, (_, i) => (i * 7) % n);
    const z = deflater();
    const stream = w.update([zrle.rect(0, 0, tw, th, await z.chunk(zrle.packed(pal, idx, tw)))]);
    const fb = expectSplitInvariant(stream);
    expect(region(fb, 0, 0, tw, th).equals(toRgbx(idx.map((i) => pal[i] as Rgb)))).toBe(true);
  });

  it('keeps one zlib stream across rectangles and updates', async () => {
    const z = deflater();
    const a = await z.chunk(zrle.solid([9, 8, 7]));
    const b = await z.chunk(zrle.solid([1, 2, 3]));
    const c = await z.chunk(zrle.raw(colours(64 * 4, 2)));
    expect(b.subarray(0, 2).equals(Buffer.from([0x78, 0x9c]))).toBe(false); // no second header
    const stream = w.cat(
      w.update([zrle.rect(0, 0, 64, 48, a)]),
      w.update([zrle.rect(0, 30, 64, 10, b), zrle.rect(0, 10, 64, 4, c)]),
    );
    const fb = expectSplitInvariant(stream);
    expect(fb.pixel(0, 20)).toEqual([9, 8, 7]);
    expect(fb.pixel(0, 35)).toEqual([1, 2, 3]);
    expect(region(fb, 0, 10, 64, 4).equals(toRgbx(colours(64 * 4, 2)))).toBe(true);
    expect(fb.updates).toBe(2);
  });

  it('reports an update with ZRLE rects as carrying pixels', async () => {
    const z = deflater();
    const run = runParser([
      w.update([zrle.rect(0, 0, 4, 4, await z.chunk(zrle.solid([1, 1, 1])))]),
    ]);
    expect(run.error).toBeUndefined();
    expect(run.events).toEqual([{ ev: 'updateEnd', pixels: true }]);
  });

  describe('rejects', () => {
    async function zrleError(tiles: Buffer, rw = 8, rh = 8): Promise<unknown> {
      const z = deflater();
      return runParser([w.update([zrle.rect(0, 0, rw, rh, await z.chunk(tiles))])]).error;
    }

    it('a palette index past the palette', async () => {
      expectProtocolError(
        await zrleError(zrle.packed(colours(3), Array(64).fill(3) as number[], 8)),
        'bad-zrle',
        /palette index 3 of a 3-colour palette/,
      );
      expectProtocolError(
        await zrleError(zrle.paletteRle(colours(2), [[5, 64]])),
        'bad-zrle',
        /palette index 5/,
      );
    });

    it('a run past the end of its tile', async () => {
      expectProtocolError(
        await zrleError(zrle.plainRle([[[1, 1, 1], 65]])),
        'bad-zrle',
        /longer than the 64 left/,
      );
      expectProtocolError(
        await zrleError(
          zrle.paletteRle(colours(2), [
            [0, 60],
            [1, 5],
          ]),
        ),
        'bad-zrle',
        /longer than the 4 left/,
      );
    });

    it.each([17, 100, 127, 129])('the unused subencoding %i', async (sub) => {
      expectProtocolError(
        await zrleError(w.u8(sub)),
        'bad-zrle',
        new RegExp(`unused subencoding ${sub}`),
      );
    });

    it('tile data that ends early, or goes on after the last tile', async () => {
      expectProtocolError(await zrleError(zrle.raw(colours(63))), 'bad-zrle', /ends before/);
      expectProtocolError(
        await zrleError(w.cat(zrle.solid([1, 2, 3]), w.u8(0))),
        'bad-zrle',
        /1 bytes after its last tile/,
      );
    });

    it('data that is not zlib', () => {
      const junk = Buffer.from('not a zlib stream at all');
      const run = runParser([w.update([zrle.rect(0, 0, 8, 8, junk)])]);
      expectProtocolError(run.error, 'bad-compressed-data', /zlib header/);
    });

    it('a zip bomb: 1 MiB of zeros in 1 KiB for a 8×8 rect, stopped at what the rect can hold', () => {
      const bomb = zlib.deflateSync(Buffer.alloc(1024 * 1024), {
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
      });
      expect(bomb.length).toBeLessThan(1600); // within the compressed bound: inflating decides
      const run = runParser([w.update([zrle.rect(0, 0, 8, 8, bomb)])]);
      expectProtocolError(run.error, 'decompressed-too-large', /more than the 638 bytes/);
    });

    it('a big bomb already by its compressed length', () => {
      const bomb = zlib.deflateSync(Buffer.alloc(16 * 1024 * 1024), {
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
      });
      const run = runParser([w.update([zrle.rect(0, 0, 8, 8, bomb)])]);
      expectProtocolError(run.error, 'bad-zrle', /compressed bytes, more than its tiles can take/);
    });

    it('a compressed length beyond what the rect can need, from the length field alone', () => {
      const run = runParser([
        w.cat(w.u8(0), w.pad(1), w.u16(1), w.rectHeader(0, 0, 8, 8, 16), w.u32(0xffffffff)),
      ]);
      expectProtocolError(run.error, 'bad-zrle', /announces 4294967295 compressed bytes/);
    });

    it('a compressed length over limits.maxCompressedRect, from the length field alone', () => {
      const limits = { ...DEFAULT_RFB_LIMITS, maxCompressedRect: 1000 };
      const head = w.cat(w.u8(0), w.pad(1), w.u16(1), w.rectHeader(0, 0, 64, 48, 16), w.u32(1001));
      const run = runAny([head], 64, 48, limits, ASKED);
      expectProtocolError(run.error, 'bad-zrle', /over the 1000-byte limit/);
      expect(
        runAny([head.subarray(0, head.length - 4), w.u32(1000)], 64, 48, limits, ASKED).error,
      ).toBeUndefined();
    });

    it('a rect outside the framebuffer, from its header', () => {
      const run = runParser([w.cat(w.u8(0), w.pad(1), w.u16(1), w.rectHeader(60, 0, 8, 8, 16))]);
      expectProtocolError(run.error, 'rect-out-of-bounds');
    });
  });
});

describe('Tight', () => {
  it('fills a rect with one colour', () => {
    const stream = w.update([tight.rect(3, 4, 20, 10, tight.fill([200, 100, 50]))]);
    const fb = expectSplitInvariant(stream);
    expect(fb.pixel(3, 4)).toEqual([200, 100, 50]);
    expect(fb.pixel(22, 13)).toEqual([200, 100, 50]);
    expect(fb.pixel(23, 13)).toEqual([0, 0, 0]);
  });

  it('hands a large rect to the sink in bands, never one full-size buffer', () => {
    const run = runParser(
      [w.update([tight.rect(0, 0, 1024, 768, tight.fill([4, 5, 6]))])],
      1024,
      768,
    );
    expect(run.error).toBeUndefined();
    const puts = run.calls.filter((c) => c.op === 'putPixels');
    expect(puts.length).toBeGreaterThan(1);
    for (const p of puts) expect(p.pixels.length).toBeLessThanOrEqual(RAW_BAND_BYTES);
    expect(puts.reduce((rows, p) => rows + p.h, 0)).toBe(768);
  });

  it('copies TPIXELs: under 12 bytes as they are, longer through zlib', async () => {
    const small = colours(3, 4); // 9 bytes: not compressed
    const big = colours(16 * 8, 5);
    const z = deflater();
    const bigData = tight.copyData(big);
    const stream = w.update([
      tight.rect(0, 0, 3, 1, tight.basic({ stream: 0, data: tight.copyData(small) })),
      tight.rect(
        0,
        1,
        16,
        8,
        tight.basic({ stream: 0, filter: 0, data: bigData, compressed: await z.chunk(bigData) }),
      ),
    ]);
    const fb = expectSplitInvariant(stream);
    expect(region(fb, 0, 0, 3, 1).equals(toRgbx(small))).toBe(true);
    expect(region(fb, 0, 1, 16, 8).equals(toRgbx(big))).toBe(true);
  });

  it.each([1, 2, 3, 200, 256])('decodes the palette filter with %i colours', async (n) => {
    const pal = colours(n, n);
    const rw = 11; // rows end mid-byte for 1-bit indices
    const rh = 7;
    const idx = Array.from({ length: rw * rh }, (_, i) => (i * 31) % n);
    const data = tight.paletteData(n, idx, rw);
    const z = deflater();
    const body = tight.basic({
      stream: 2,
      filter: 1,
      palette: pal,
      data,
      compressed: data.length >= 12 ? await z.chunk(data) : undefined,
    });
    const fb = expectSplitInvariant(w.update([tight.rect(5, 5, rw, rh, body)]));
    expect(region(fb, 5, 5, rw, rh).equals(toRgbx(idx.map((i) => pal[i] as Rgb)))).toBe(true);
  });

  it('decodes the gradient filter, clamping the prediction', async () => {
    const rw = 9;
    const rh = 6;
    // steep edges so left + above - above-left leaves 0..255 both ways
    const px: Rgb[] = Array.from({ length: rw * rh }, (_, i) => {
      const x = i % rw;
      const y = Math.floor(i / rw);
      return [x % 2 ? 255 : 0, (x * 40 + y * 30) & 0xff, y % 2 ? 250 : 5];
    });
    const data = tight.gradientData(px, rw);
    const z = deflater();
    const body = tight.basic({ stream: 1, filter: 2, data, compressed: await z.chunk(data) });
    const fb = expectSplitInvariant(w.update([tight.rect(0, 0, rw, rh, body)]));
    expect(region(fb, 0, 0, rw, rh).equals(toRgbx(px))).toBe(true);
  });

  it('keeps four zlib streams apart and resets one on its bit', async () => {
    const zs = [deflater(), deflater(), deflater(), deflater()];
    const rects: w.WireRect[] = [];
    const expected: { y: number; px: Rgb[] }[] = [];
    let y = 0;
    for (let round = 0; round < 3; round++) {
      for (let s = 0; s < 4; s++) {
        let resets = 0;
        if (round === 2 && s === 1) {
          zs[1]?.reset();
          resets = 0b0010;
        }
        const px = colours(16 * 2, round * 4 + s);
        const data = tight.copyData(px);
        const compressed = await (zs[s] as DeflateStream).chunk(data);
        rects.push(tight.rect(0, y, 16, 2, tight.basic({ stream: s, resets, data, compressed })));
        expected.push({ y, px });
        y += 2;
      }
    }
    const fb = expectSplitInvariant(w.update(rects));
    for (const e of expected) expect(region(fb, 0, e.y, 16, 2).equals(toRgbx(e.px))).toBe(true);
  });

  it('a reset bit with a fill rect resets the stream too', async () => {
    const z = deflater();
    const first = colours(8, 1);
    const second = colours(8, 2);
    const a = await z.chunk(tight.copyData(first));
    z.reset();
    const b = await z.chunk(tight.copyData(second));
    const stream = w.update([
      tight.rect(
        0,
        0,
        8,
        1,
        tight.basic({ stream: 3, data: tight.copyData(first), compressed: a }),
      ),
      tight.rect(0, 1, 8, 1, tight.fill([1, 2, 3], 0b1000)),
      tight.rect(
        0,
        2,
        8,
        1,
        tight.basic({ stream: 3, data: tight.copyData(second), compressed: b }),
      ),
    ]);
    const fb = expectSplitInvariant(stream);
    expect(region(fb, 0, 2, 8, 1).equals(toRgbx(second))).toBe(true);
  });

  describe('rejects', () => {
    const header = (rw: number, rh: number): Buffer =>
      w.cat(w.u8(0), w.pad(1), w.u16(1), w.rectHeader(0, 0, rw, rh, 7));

    it('JPEG, which we never ask for, from the control byte alone', () => {
      const run = runParser([header(8, 8), w.u8(0x90)]);
      expectProtocolError(run.error, 'bad-tight', /JPEG/);
    });

    it.each([0xa0, 0xb0, 0xf0])('the compression control 0x%s', (ctl) => {
      expectProtocolError(
        runParser([header(8, 8), w.u8(ctl)]).error,
        'bad-tight',
        /not fill, JPEG or basic/,
      );
    });

    it('an unknown filter', () => {
      expectProtocolError(
        runParser([header(8, 8), w.u8(0x40), w.u8(3)]).error,
        'bad-tight',
        /unknown filter 3/,
      );
    });

    it('a palette index past the palette', async () => {
      const data = Buffer.alloc(16, 3);
      const z = deflater();
      const body = tight.basic({
        stream: 0,
        filter: 1,
        palette: colours(3),
        data,
        compressed: await z.chunk(data),
      });
      const run = runParser([w.update([tight.rect(0, 0, 4, 4, body)])]);
      expectProtocolError(run.error, 'bad-tight', /palette index 3 of a 3-colour palette/);
    });

    it('a compressed length beyond what the data can need', () => {
      const run = runParser([header(8, 8), w.u8(0x00), Buffer.from([0xff, 0xff, 0xff])]);
      expectProtocolError(
        run.error,
        'bad-tight',
        /announces 4194303 compressed bytes for 192 bytes/,
      );
    });

    it('data that inflates short of the filter data size', async () => {
      const z = deflater();
      const short = await z.chunk(Buffer.alloc(100));
      const run = runParser([
        w.update([
          tight.rect(
            0,
            0,
            8,
            8,
            tight.basic({ stream: 0, data: Buffer.alloc(192), compressed: short }),
          ),
        ]),
      ]);
      expectProtocolError(run.error, 'bad-tight', /inflates to 100 bytes, not the 192/);
    });

    it('a zip bomb, stopped at the data size', () => {
      const bomb = zlib.deflateSync(Buffer.alloc(8 * 1024 * 1024), {
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
      });
      const run = runParser([
        w.update([
          tight.rect(
            0,
            0,
            8,
            8,
            tight.basic({ stream: 0, data: Buffer.alloc(192), compressed: bomb }),
          ),
        ]),
      ]);
      // the compressed length alone already exceeds what 192 bytes need
      expect(run.error).toBeInstanceOf(RfbProtocolError);
      const small = zlib.deflateSync(Buffer.alloc(100_000), {
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
      });
      expect(small.length).toBeLessThan(1100);
      const run2 = runParser([
        w.update([
          tight.rect(
            0,
            0,
            8,
            8,
            tight.basic({ stream: 0, data: Buffer.alloc(192), compressed: small }),
          ),
        ]),
      ]);
      expectProtocolError(run2.error, 'decompressed-too-large', /more than the 192 bytes/);
    });
  });
});

describe('garbage in ZRLE and Tight rects (fast-check)', () => {
  it('never crashes or hangs: only RfbProtocolError, or waits for more', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(7, 16),
        fc.record({ x: fc.nat(40), y: fc.nat(40), w: fc.nat(80), h: fc.nat(80) }),
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }),
          // steer into valid zlib headers and Tight modes
          fc
            .uint8Array({ maxLength: 400 })
            .map((b) => w.cat(Buffer.from([0, 0, 0, 60, 0x78, 0x9c]), b)),
          fc.uint8Array({ maxLength: 400 }).map((b) => w.cat(Buffer.from([0x40, 1, 3]), b)),
        ),
        fc.array(fc.nat(), { maxLength: 6 }),
        (encoding, r, garbage, cuts) => {
          const bytes = w.cat(
            w.u8(0),
            w.pad(1),
            w.u16(2),
            w.rectHeader(r.x, r.y, r.w, r.h, encoding),
            garbage,
          );
          const run = runParser(
            w.splitAt(
              bytes,
              cuts.map((c) => c % (bytes.length + 1)),
            ),
            64,
            64,
          );
          if (run.error !== undefined) expect(run.error).toBeInstanceOf(RfbProtocolError);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('random valid-looking deflate data in ZRLE tiles only ever fails cleanly', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        fc.integer({ min: 1, max: 70 }),
        fc.integer({ min: 1, max: 70 }),
        (tiles, rw, rh) => {
          const z = zlib.deflateSync(Buffer.from(tiles), {
            finishFlush: zlib.constants.Z_SYNC_FLUSH,
          });
          const run = runParser([w.update([zrle.rect(0, 0, rw, rh, z)])], 80, 80);
          if (run.error !== undefined) expect(run.error).toBeInstanceOf(RfbProtocolError);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('only when asked for', () => {
  it('accepts ZRLE but not Tight when the client asked for ZRLE alone', async () => {
    const z = new DeflateStream();
    const body = await z.chunk(zrle.solid([1, 2, 3]));
    z.close();
    const ok = runAny([w.update([zrle.rect(0, 0, 4, 4, body)])], 64, 48, DEFAULT_RFB_LIMITS, [16]);
    expect(ok.error).toBeUndefined();
    const refused = runAny(
      [w.update([tight.rect(0, 0, 4, 4, tight.fill([1, 2, 3]))])],
      64,
      48,
      DEFAULT_RFB_LIMITS,
      [16],
    );
    expectProtocolError(refused.error, 'unknown-encoding', /encoding 7, which we did not ask for/);
  });
});

describe('ZRLE round trip (fast-check)', () => {
  /** Encode a tile in the chosen subencoding (falling back to raw when it cannot apply). */
  function encodeTile(px: Rgb[], tw: number, choice: number): Buffer {
    const key = (c: Rgb): number => c[0] | (c[1] << 8) | (c[2] << 16);
    const palette: Rgb[] = [];
    const index = new Map<number, number>();
    for (const c of px) {
      if (!index.has(key(c))) {
        index.set(key(c), palette.length);
        palette.push(c);
      }
    }
    const idx = px.map((c) => index.get(key(c)) as number);
    const runs: [number, number][] = [];
    for (const i of idx) {
      const last = runs.at(-1);
      if (last && last[0] === i) last[1]++;
      else runs.push([i, 1]);
    }
    if (palette.length === 1 && choice % 2 === 0) return zrle.solid(palette[0] as Rgb);
    switch (choice) {
      case 1:
        if (palette.length >= 2 && palette.length <= 16) return zrle.packed(palette, idx, tw);
        break;
      case 2:
        return zrle.plainRle(runs.map(([i, n]) => [palette[i] as Rgb, n]));
      case 3:
        if (palette.length >= 2 && palette.length <= 127) return zrle.paletteRle(palette, runs);
        break;
    }
    return zrle.raw(px);
  }

  it('random tiles in random subencodings decode to the pixels encoded, however split', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 150 }),
        fc.integer({ min: 1, max: 100 }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.nat(3), { minLength: 12, maxLength: 12 }),
        fc.nat(),
        fc.array(fc.nat(), { maxLength: 5 }),
        async (rw, rh, colourCount, choices, seed, cuts) => {
          const pal = colours(colourCount, seed % 97);
          let s = seed;
          const pick = (): Rgb => {
            s = (s * 1103515245 + 12345) & 0x7fffffff;
            // long stretches of one colour, so runs and solid tiles happen
            return pal[(s >> 16) % 7 === 0 ? (s >> 8) % colourCount : 0] as Rgb;
          };
          const pixels: Rgb[] = Array.from({ length: rw * rh }, pick);
          const tiles: Buffer[] = [];
          let t = 0;
          for (let ty = 0; ty < rh; ty += 64)
            for (let tx = 0; tx < rw; tx += 64) {
              const tw = Math.min(64, rw - tx);
              const th = Math.min(64, rh - ty);
              const px: Rgb[] = [];
              for (let row = 0; row < th; row++)
                for (let col = 0; col < tw; col++)
                  px.push(pixels[(ty + row) * rw + tx + col] as Rgb);
              tiles.push(encodeTile(px, tw, choices[t++ % choices.length] as number));
            }
          const z = deflater();
          const stream = w.update([zrle.rect(0, 0, rw, rh, await z.chunk(w.cat(...tiles)))]);
          const { fb, error } = decode(
            w.splitAt(
              stream,
              cuts.map((c) => c % (stream.length + 1)),
            ),
            150,
            100,
          );
          expect(error).toBeUndefined();
          expect(region(fb, 0, 0, rw, rh).equals(toRgbx(pixels))).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('Tight round trip (fast-check)', () => {
  it('random rects in random filters and streams decode to the pixels encoded, however split', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            w: fc.integer({ min: 1, max: 40 }),
            h: fc.integer({ min: 1, max: 30 }),
            filter: fc.constantFrom('copy', 'palette', 'gradient', 'fill'),
            stream: fc.nat(3),
            reset: fc.boolean(),
            colours: fc.integer({ min: 1, max: 256 }),
            seed: fc.nat(),
          }),
          { minLength: 1, maxLength: 6 },
        ),
        fc.array(fc.nat(), { maxLength: 5 }),
        async (rects, cuts) => {
          const zs = [deflater(), deflater(), deflater(), deflater()];
          const wire: w.WireRect[] = [];
          const expected = new FramebufferModel();
          expected.resize(W, H);
          for (const r of rects) {
            const pal = colours(r.filter === 'fill' ? 1 : r.colours, r.seed % 101);
            let s = r.seed;
            const px: Rgb[] = Array.from({ length: r.w * r.h }, () => {
              s = (s * 1103515245 + 12345) & 0x7fffffff;
              return pal[(s >> 8) % pal.length] as Rgb;
            });
            expected.putPixels(0, 0, r.w, r.h, toRgbx(px));
            let resets = 0;
            if (r.reset) {
              zs[r.stream]?.reset();
              resets = 1 << r.stream;
            }
            if (r.filter === 'fill') {
              wire.push(tight.rect(0, 0, r.w, r.h, tight.fill(pal[0] as Rgb, resets)));
              continue;
            }
            const paletteFilter = r.filter === 'palette';
            const data =
              r.filter === 'copy'
                ? tight.copyData(px)
                : r.filter === 'gradient'
                  ? tight.gradientData(px, r.w)
                  : tight.paletteData(
                      pal.length,
                      px.map((p) => pal.indexOf(p)),
                      r.w,
                    );
            const body = tight.basic({
              stream: r.stream,
              resets,
              filter: r.filter === 'copy' ? 0 : paletteFilter ? 1 : 2,
              ...(paletteFilter ? { palette: pal } : {}),
              data,
              compressed:
                data.length >= 12 ? await (zs[r.stream] as DeflateStream).chunk(data) : undefined,
            });
            wire.push(tight.rect(0, 0, r.w, r.h, body));
          }
          const stream = w.update(wire);
          const { fb, error } = decode(
            w.splitAt(
              stream,
              cuts.map((c) => c % (stream.length + 1)),
            ),
          );
          expect(error).toBeUndefined();
          expect(fb.data.equals(expected.data)).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });
});
