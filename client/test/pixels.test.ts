import { packIndices } from '@vdi/shared';
import { describe, expect, it } from 'vitest';
import { PixelFormatError } from '../src/viewer/pixel-format-error';
import {
  decodeDeflatePalette,
  decodeDeflateRgb,
  paletteToRgba,
  rgbToRgba,
} from '../src/viewer/pixels';
import { InflateStream, SHORT_OUTPUT_TIMEOUT_MS } from '../src/viewer/inflate-stream';
import { concat, segment } from './helpers/deflate-segment';
import { ManualClock } from './helpers/manual-clock';

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
    const rgba = await decodeDeflateRgb(segment(rgb), w, h, new InflateStream());
    expect(rgba).toBeInstanceOf(Uint8ClampedArray);
    expect(rgba.length).toBe(w * h * 4);
    expect([...rgba.subarray(0, 8)]).toEqual([0, 10, 20, 255, 30, 40, 50, 255]);
    expect([...rgba.subarray(20, 24)]).toEqual([150, 160, 170, 255]);
  });

  it('rejects a payload for a different rect size', async () => {
    const rgb = new Uint8Array(4 * 4 * 3);
    const clock = new ManualClock();
    await expect(
      clock.settle(
        decodeDeflateRgb(segment(rgb), 4, 5, new InflateStream(clock)),
        SHORT_OUTPUT_TIMEOUT_MS,
      ),
    ).rejects.toBeInstanceOf(PixelFormatError);
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
      segment(concat(palette, packIndices(indices, 3, 2, 3))),
    );
    const rgba = await decodeDeflatePalette(payload, 3, 2, new InflateStream());
    expect([...rgba]).toEqual([
      0x10, 0x20, 0x30, 255, 0xff, 0xff, 0xff, 255, 0x00, 0x80, 0x00, 255, 0x00, 0x80, 0x00, 255,
      0xff, 0xff, 0xff, 255, 0x10, 0x20, 0x30, 255,
    ]);
  });

  it('handles a full 256-colour palette', async () => {
    const big = new Uint8Array(256 * 3).map((_, i) => Math.floor(i / 3));
    const indices = Uint8Array.of(255, 0, 128, 7);
    const rgba = await decodeDeflatePalette(
      concat(Uint8Array.of(255), segment(concat(big, indices))),
      2,
      2,
      new InflateStream(),
    );
    expect([...rgba]).toEqual([255, 255, 255, 255, 0, 0, 0, 255, 128, 128, 128, 255, 7, 7, 7, 255]);
  });

  it('rejects an index beyond the palette size', async () => {
    // three colours use two bits per index, so index 3 can be encoded but is out of range
    const payload = concat(Uint8Array.of(2), segment(concat(palette, Uint8Array.of(0b00110000))));
    await expect(decodeDeflatePalette(payload, 2, 1, new InflateStream())).rejects.toBeInstanceOf(
      PixelFormatError,
    );
  });

  it('unpacks one bit per pixel for two-colour rects, rows byte-aligned', async () => {
    const payload = concat(
      Uint8Array.of(1),
      segment(concat(palette.subarray(0, 6), Uint8Array.of(0b10100000, 0b01000000))),
    );
    const rgba = await decodeDeflatePalette(payload, 3, 2, new InflateStream());
    const white = [0xff, 0xff, 0xff, 255];
    const dark = [0x10, 0x20, 0x30, 255];
    expect([...rgba]).toEqual([...white, ...dark, ...white, ...dark, ...white, ...dark]);
  });

  it('rejects a truncated palette and an empty payload', async () => {
    // four colours announced, one in the segment (and no indices)
    const clock = new ManualClock();
    await expect(
      clock.settle(
        decodeDeflatePalette(
          concat(Uint8Array.of(3), segment(Uint8Array.of(1, 2, 3))),
          1,
          1,
          new InflateStream(clock),
        ),
        SHORT_OUTPUT_TIMEOUT_MS,
      ),
    ).rejects.toThrow(/fewer bytes/);
    await expect(
      decodeDeflatePalette(new Uint8Array(0), 1, 1, new InflateStream()),
    ).rejects.toThrow(/empty/);
  });
});
