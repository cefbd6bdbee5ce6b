import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodeThumbnail } from '../../../src/stream/thumbnail.js';

function solid(w: number, h: number, rgbx: [number, number, number, number]): Buffer {
  const fb = Buffer.alloc(w * h * 4);
  for (let i = 0; i < w * h; i++) fb.set(rgbx, i * 4);
  return fb;
}

describe('encodeThumbnail', () => {
  it('scales a framebuffer down to a JPEG of the given width, keeping its aspect', async () => {
    const jpeg = await encodeThumbnail(solid(480, 300, [10, 20, 30, 0]), 480, 300, 240);
    const meta = await sharp(jpeg).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 240, 150]);
  });

  it('never scales up', async () => {
    const meta = await sharp(
      await encodeThumbnail(solid(100, 50, [0, 0, 0, 0]), 100, 50, 240),
    ).metadata();
    expect([meta.width, meta.height]).toEqual([100, 50]);
  });

  it('reads the 4th byte as padding, not alpha: colours survive a zero in it', async () => {
    const jpeg = await encodeThumbnail(solid(480, 300, [200, 100, 50, 0]), 480, 300, 240);
    const { data } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
    const [r, g, b] = [data[0]!, data[1]!, data[2]!];
    expect(Math.abs(r - 200)).toBeLessThan(8);
    expect(Math.abs(g - 100)).toBeLessThan(8);
    expect(Math.abs(b - 50)).toBeLessThan(8);
  });
});
