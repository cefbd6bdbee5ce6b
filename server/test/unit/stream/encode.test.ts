import { describe, expect, it } from 'vitest';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { Codec, unpackIndices } from '@vdi/shared';
import { analyse } from '../../../src/stream/classify.js';
import { encodeRect, JPEG_MIN_PIXELS } from '../../../src/stream/encode.js';

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
      { quality: 80, allowLossy: true },
    );
    expect(r.codec).toBe(Codec.Fill);
    expect([...r.payload]).toEqual([10, 20, 30, 255]);
  });

  it('sends text-like content losslessly as a palette', async () => {
    const px = rgbx(200, 40, (x, y) => ((x * 7 + y * 3) % 5 === 0 ? [0, 0, 0] : [255, 255, 255]));
    const r = await encodeRect(0, 0, 200, 40, px, { quality: 80, allowLossy: true });
    expect(r.codec).toBe(Codec.DeflatePalette);
    expect(r.lossy).toBe(false);
    // decode and compare exactly
    const n = r.payload[0]! + 1;
    const pal = r.payload.subarray(1, 1 + n * 3);
    const idx = unpackIndices(zlib.inflateRawSync(r.payload.subarray(1 + n * 3)), 200, 40, n);
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
    const hot = await encodeRect(0, 0, 128, 128, px, { quality: 70, allowLossy: true });
    expect(hot.codec).toBe(Codec.Jpeg);
    expect(hot.lossy).toBe(true);
    const meta = await sharp(Buffer.from(hot.payload)).metadata();
    expect([meta.width, meta.height, meta.format]).toEqual([128, 128, 'jpeg']);
    const quiet = await encodeRect(0, 0, 128, 128, px, { quality: 70, allowLossy: false });
    expect(quiet.lossy).toBe(false);
    expect([Codec.Png, Codec.DeflateRgb]).toContain(quiet.codec);
  });

  it('never uses JPEG for tiny rects', async () => {
    const side = Math.floor(Math.sqrt(JPEG_MIN_PIXELS)) - 1;
    const r = await encodeRect(0, 0, side, side, rgbx(side, side, noise(2)), {
      quality: 70,
      allowLossy: true,
    });
    expect(r.codec).toBe(Codec.DeflateRgb);
    const rgb = zlib.inflateRawSync(r.payload);
    expect(rgb.byteLength).toBe(side * side * 3);
  });

  it('large lossless photo-like rects go through PNG and decode exactly', async () => {
    const px = rgbx(300, 200, noise(3));
    const r = await encodeRect(0, 0, 300, 200, px, { quality: 70, allowLossy: false });
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
