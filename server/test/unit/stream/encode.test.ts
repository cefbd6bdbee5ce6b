import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { Codec, unpackIndices } from '@vdi/shared';
import { analyse } from '../../../src/stream/classify.js';
import { encodeRect, JPEG_MIN_PIXELS } from '../../../src/stream/encode.js';
import {
  DeflateStream,
  InflateSegments,
  SYNC_MAX_BYTES,
} from '../../../src/stream/deflate-stream.js';

/** a fresh zlib stream per rect: each payload inflates on its own */
const hints = (quality: number, allowLossy: boolean) => ({
  quality,
  allowLossy,
  zlib: new DeflateStream(),
});
const inflate = (segment: Uint8Array) => new InflateSegments().inflate(segment);

function rgbx(w: number, h: number, f: (x: number, y: number) => [number, number, number]): Buffer {
  const b = Buffer.alloc(w * h * 4);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const [r, g, bl] = f(x, y);
      b.set([r, g, bl, 0], (y * w + x) * 4);
    }
  return b;
}

const noise =
  (seed: number) =>
  (x: number, y: number): [number, number, number] => {
    const v = Math.imul((x * 73856093) ^ (y * 19349663) ^ seed, 2654435761) >>> 0;
    return [v & 255, (v >> 8) & 255, (v >> 16) & 255];
  };

describe('codec choice', () => {
  it('sends a one-colour rect as a fill', async () => {
    const r = await encodeRect(
      0,
      0,
      100,
      50,
      rgbx(100, 50, () => [10, 20, 30]),
      hints(80, true),
    );
    expect(r.codec).toBe(Codec.Fill);
    expect([...r.payload]).toEqual([10, 20, 30, 255]);
  });

  it('sends text-like content losslessly as a palette', async () => {
    const px = rgbx(200, 40, (x, y) => ((x * 7 + y * 3) % 5 === 0 ? [0, 0, 0] : [255, 255, 255]));
    const r = await encodeRect(0, 0, 200, 40, px, hints(80, true));
    expect(r.codec).toBe(Codec.DeflatePalette);
    expect(r.lossy).toBe(false);
    // decode and compare exactly
    const n = r.payload[0]! + 1;
    const plain = inflate(r.payload.subarray(1));
    const pal = plain.subarray(0, n * 3);
    const idx = unpackIndices(plain.subarray(n * 3), 200, 40, n);
    for (let i = 0; i < 200 * 40; i++) {
      const k = idx[i]!;
      expect([pal[k * 3], pal[k * 3 + 1], pal[k * 3 + 2]]).toEqual([
        px[i * 4],
        px[i * 4 + 1],
        px[i * 4 + 2],
      ]);
    }
    expect(r.payload.byteLength).toBeLessThan((200 * 40 * 3) / 10);
  });

  it('sends changing photo-like content as JPEG, and quiet photo-like content losslessly', async () => {
    const px = rgbx(128, 128, noise(1));
    const hot = await encodeRect(0, 0, 128, 128, px, hints(70, true));
    expect(hot.codec).toBe(Codec.Jpeg);
    expect(hot.lossy).toBe(true);
    const meta = await sharp(Buffer.from(hot.payload)).metadata();
    expect([meta.width, meta.height, meta.format]).toEqual([128, 128, 'jpeg']);
    const quiet = await encodeRect(0, 0, 128, 128, px, hints(70, false));
    expect(quiet.lossy).toBe(false);
    expect([Codec.Png, Codec.DeflateRgb]).toContain(quiet.codec);
  });

  it('never uses JPEG for tiny rects', async () => {
    const side = Math.floor(Math.sqrt(JPEG_MIN_PIXELS)) - 1;
    const r = await encodeRect(0, 0, side, side, rgbx(side, side, noise(2)), hints(70, true));
    expect(r.codec).toBe(Codec.DeflateRgb);
    const rgb = inflate(r.payload);
    expect(rgb.byteLength).toBe(side * side * 3);
  });

  it('large lossless photo-like rects go through PNG and decode exactly', async () => {
    const px = rgbx(300, 200, noise(3));
    const r = await encodeRect(0, 0, 300, 200, px, hints(70, false));
    expect(r.codec).toBe(Codec.Png);
    const { data, info } = await sharp(Buffer.from(r.payload))
      .raw()
      .toBuffer({ resolveWithObject: true });
    expect(info.channels).toBe(3);
    for (let i = 0; i < 300 * 200; i += 997)
      expect([data[i * 3], data[i * 3 + 1], data[i * 3 + 2]]).toEqual([
        px[i * 4],
        px[i * 4 + 1],
        px[i * 4 + 2],
      ]);
  });

  it('analyse stops counting colours past the palette limit', () => {
    expect(analyse(rgbx(64, 64, noise(4)), 64, 64).kind).toBe('many');
    const a = analyse(
      rgbx(64, 64, (x) => [x, 0, 0]),
      64,
      64,
    );
    expect(a.kind).toBe('palette');
    if (a.kind === 'palette') expect(a.palette.length).toBe(64);
  });
});

describe("the zlib stream shared by a viewer's rects", () => {
  it('compresses a repeated glyph to a few bytes, and decodes segment by segment', async () => {
    const z = new DeflateStream();
    const rx = new InflateSegments();
    const glyph = Buffer.from(
      Array.from({ length: 200 }, (_, i) => Math.imul(i + 1, 2654435761) >>> 28),
    );
    const first = await z.compress(glyph);
    const again = await z.compress(glyph);
    expect(again.length).toBeLessThan(first.length / 3);
    expect(rx.inflate(first)).toEqual(glyph);
    expect(rx.inflate(again)).toEqual(glyph);
  });

  it('keeps segments in call order even when calls overlap', async () => {
    const z = new DeflateStream();
    const parts = Array.from({ length: 20 }, (_, i) => Buffer.alloc(50 + i * 10, i));
    const segs = await Promise.all(parts.map((p) => z.compress(p)));
    const rx = new InflateSegments();
    for (let i = 0; i < parts.length; i++) expect(rx.inflate(segs[i]!)).toEqual(parts[i]);
  });

  it('compresses small segments on the calling thread and large ones on the pool, in call order', async () => {
    const z = new DeflateStream();
    const rx = new InflateSegments();
    const noise = (n: number, seed: number) =>
      Buffer.from(Array.from({ length: n }, (_, i) => Math.imul(i + seed, 2654435761) >>> 24));
    // a glyph, then a segment too large for the calling thread, then glyphs queued behind it
    const parts = [noise(300, 1), noise(SYNC_MAX_BYTES + 1, 2), noise(300, 3), noise(300, 1)];
    const segs = await Promise.all(parts.map((p) => z.compress(p)));
    expect(z.syncSegments).toBe(1);
    for (let i = 0; i < parts.length; i++) expect(rx.inflate(segs[i]!)).toEqual(parts[i]);
    // nothing queued any more: the next glyph is done here, against the same history
    const again = await z.compress(noise(300, 3));
    expect(z.syncSegments).toBe(2);
    expect(again.length).toBeLessThan(30);
    expect(rx.inflate(again)).toEqual(noise(300, 3));
  });

  it('any mix of segment sizes, awaited or overlapping, decodes in order', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            size: fc.oneof(fc.integer({ min: 1, max: 2000 }), fc.integer({ min: 1, max: 40_000 })),
            seed: fc.integer({ min: 0, max: 255 }),
            wait: fc.boolean(),
          }),
          { minLength: 1, maxLength: 8 },
        ),
        async (steps) => {
          const z = new DeflateStream();
          const parts: Buffer[] = [];
          const segs: Promise<Buffer>[] = [];
          for (const { size, seed, wait } of steps) {
            const p = Buffer.from(Array.from({ length: size }, (_, i) => ((i >> 3) * seed) & 0xff));
            parts.push(p);
            const seg = z.compress(p);
            segs.push(seg);
            if (wait) await seg;
          }
          const rx = new InflateSegments();
          const out = await Promise.all(segs);
          for (let i = 0; i < parts.length; i++) expect(rx.inflate(out[i]!)).toEqual(parts[i]);
          z.close();
        },
      ),
      { numRuns: 25 },
    );
  }, 30_000);

  it('a segment in flight when the stream closes (its viewer went away) fails as closed', async () => {
    const z = new DeflateStream();
    const big = Buffer.from(
      Array.from({ length: SYNC_MAX_BYTES * 4 }, (_, i) => Math.imul(i, 2654435761) >>> 24),
    );
    const seg = z.compress(big);
    // the write starts a microtask later (behind the queue); close once it is on the pool
    for (let i = 0; i < 3; i++) await Promise.resolve();
    z.close();
    await expect(seg).rejects.toThrow('the deflate stream was closed');
  });

  it('starts over at reset, so the receiver can too', async () => {
    const z = new DeflateStream();
    const glyph = Buffer.alloc(100, 7);
    await z.compress(glyph);
    z.reset();
    const seg = await z.compress(glyph);
    expect(new InflateSegments().inflate(seg)).toEqual(glyph);
  });
});
