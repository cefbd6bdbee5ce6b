import { packIndices } from '@vdi/shared';
import { describe, expect, it } from 'vitest';
import {
  PixelFormatError,
  decodeDeflatePalette,
  decodeDeflateRgb,
  inflateRaw,
  paletteToRgba,
  rgbToRgba,
} from '../src/viewer/pixels';

/** Raw deflate through the platform's CompressionStream (Node ≥ 20 has it globally). */
async function deflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>])
    .stream()
    .pipeThrough(new CompressionStream('deflate-raw'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

describe('inflateRaw', () => {
  it('round-trips', async () => {
    const data = new Uint8Array(10_000).map((_, i) => (i * 7) & 0xff);
    expect(await inflateRaw(await deflateRaw(data), data.byteLength)).toEqual(data);
  });

  it('rejects data that inflates to more than expected (no bombs)', async () => {
    const data = new Uint8Array(100_000);
    await expect(inflateRaw(await deflateRaw(data), 1000)).rejects.toBeInstanceOf(PixelFormatError);
  });

  it('rejects data that inflates to less than expected', async () => {
    await expect(inflateRaw(await deflateRaw(new Uint8Array(10)), 12)).rejects.toThrow(
      /expected 12/,
    );
  });

  it('rejects corrupt deflate data', async () => {
    await expect(inflateRaw(Uint8Array.of(0xff, 0xff, 0xff, 0x00), 4)).rejects.toBeInstanceOf(
      PixelFormatError,
    );
  });
});

describe('rgbToRgba / paletteToRgba', () => {
  it('expands RGB to opaque RGBA', () => {
    expect([...rgbToRgba(Uint8Array.of(1, 2, 3, 4, 5, 6), 2)]).toEqual([
      1, 2, 3, 255, 4, 5, 6, 255,
    ]);
  });

  it('looks palette indices up', () => {
    const palette = Uint8Array.of(0, 0, 0, 255, 128, 1);
    expect([...paletteToRgba(palette, Uint8Array.of(1, 0, 1))]).toEqual([
      255, 128, 1, 255, 0, 0, 0, 255, 255, 128, 1, 255,
    ]);
  });

  it('rejects an index beyond the palette', () => {
    expect(() => paletteToRgba(Uint8Array.of(1, 2, 3), Uint8Array.of(0, 1))).toThrow(
      PixelFormatError,
    );
  });
});

describe('DeflateRgb', () => {
  it('decodes w×h×3 deflated bytes into RGBA', async () => {
    const w = 3;
    const h = 2;
    const rgb = new Uint8Array(w * h * 3).map((_, i) => i * 10);
    const rgba = await decodeDeflateRgb(await deflateRaw(rgb), w, h);
    expect(rgba).toBeInstanceOf(Uint8ClampedArray);
    expect(rgba.length).toBe(w * h * 4);
    expect([...rgba.subarray(0, 8)]).toEqual([0, 10, 20, 255, 30, 40, 50, 255]);
    expect([...rgba.subarray(20, 24)]).toEqual([150, 160, 170, 255]);
  });

  it('rejects a payload for a different rect size', async () => {
    const rgb = new Uint8Array(4 * 4 * 3);
    await expect(decodeDeflateRgb(await deflateRaw(rgb), 4, 5)).rejects.toBeInstanceOf(
      PixelFormatError,
    );
  });
});

describe('DeflatePalette', () => {
  const palette = Uint8Array.of(
    0x10,
    0x20,
    0x30, // 0
    0xff,
    0xff,
    0xff, // 1
    0x00,
    0x80,
    0x00, // 2
  );

  it('decodes size byte, palette and deflated indices into RGBA', async () => {
    const indices = Uint8Array.of(0, 1, 2, 2, 1, 0);
    const payload = concat(
      Uint8Array.of(palette.byteLength / 3 - 1),
      palette,
      await deflateRaw(packIndices(indices, 3, 2, 3)),
    );
    const rgba = await decodeDeflatePalette(payload, 3, 2);
    expect([...rgba]).toEqual([
      0x10, 0x20, 0x30, 255, 0xff, 0xff, 0xff, 255, 0x00, 0x80, 0x00, 255, 0x00, 0x80, 0x00, 255,
      0xff, 0xff, 0xff, 255, 0x10, 0x20, 0x30, 255,
    ]);
  });

  it('handles a full 256-colour palette', async () => {
    const big = new Uint8Array(256 * 3).map((_, i) => Math.floor(i / 3));
    const indices = Uint8Array.of(255, 0, 128, 7);
    const rgba = await decodeDeflatePalette(
      concat(Uint8Array.of(255), big, await deflateRaw(indices)),
      2,
      2,
    );
    expect([...rgba]).toEqual([255, 255, 255, 255, 0, 0, 0, 255, 128, 128, 128, 255, 7, 7, 7, 255]);
  });

  it('rejects an index beyond the palette size', async () => {
    // three colours use two bits per index, so index 3 can be encoded but is out of range
    const payload = concat(Uint8Array.of(2), palette, await deflateRaw(Uint8Array.of(0b00110000)));
    await expect(decodeDeflatePalette(payload, 2, 1)).rejects.toBeInstanceOf(PixelFormatError);
  });

  it('unpacks one bit per pixel for two-colour rects, rows byte-aligned', async () => {
    const payload = concat(
      Uint8Array.of(1),
      palette.subarray(0, 6),
      await deflateRaw(Uint8Array.of(0b10100000, 0b01000000)),
    );
    const rgba = await decodeDeflatePalette(payload, 3, 2);
    const white = [0xff, 0xff, 0xff, 255];
    const dark = [0x10, 0x20, 0x30, 255];
    expect([...rgba]).toEqual([...white, ...dark, ...white, ...dark, ...white, ...dark]);
  });

  it('rejects a truncated palette and an empty payload', async () => {
    await expect(decodeDeflatePalette(Uint8Array.of(3, 1, 2, 3), 1, 1)).rejects.toThrow(
      /palette truncated/,
    );
    await expect(decodeDeflatePalette(new Uint8Array(0), 1, 1)).rejects.toThrow(/empty/);
  });
});
