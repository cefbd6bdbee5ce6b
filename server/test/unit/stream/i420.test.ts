import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codedSize, i420Bytes, rgbxToI420 } from '../../../src/stream/video/i420.js';

/**
 * The conversion by its definition, in floating point: BT.601 limited range of the mean of
 * the source pixels each sample covers, the region's last column and row repeated past it.
 */
function reference(
  fb: Buffer,
  fbWidth: number,
  r: { x: number; y: number; w: number; h: number },
  s: 1 | 2,
): Buffer {
  const { w: cw, h: ch } = codedSize(r.w, r.h, s);
  const out = Buffer.alloc(i420Bytes(cw, ch));
  const mean = (x0: number, y0: number, n: number) => {
    let R = 0;
    let G = 0;
    let B = 0;
    for (let dy = 0; dy < n; dy++)
      for (let dx = 0; dx < n; dx++) {
        const x = r.x + Math.min(r.w - 1, x0 + dx);
        const y = r.y + Math.min(r.h - 1, y0 + dy);
        const o = (y * fbWidth + x) * 4;
        R += fb[o]!;
        G += fb[o + 1]!;
        B += fb[o + 2]!;
      }
    return [R / (n * n), G / (n * n), B / (n * n)] as const;
  };
  for (let y = 0; y < ch; y++)
    for (let x = 0; x < cw; x++) {
      const [R, G, B] = mean(x * s, y * s, s);
      out[y * cw + x] = Math.round(16 + (66 * R + 129 * G + 25 * B) / 256);
    }
  for (let y = 0; y < ch / 2; y++)
    for (let x = 0; x < cw / 2; x++) {
      // a chroma sample covers 2×2 coded pixels: (2s)×(2s) source pixels, clamped per coded pixel
      let R = 0;
      let G = 0;
      let B = 0;
      for (const [dx, dy] of [
        [0, 0],
        [1, 0],
        [0, 1],
        [1, 1],
      ] as const) {
        const m = mean((2 * x + dx) * s, (2 * y + dy) * s, s);
        R += m[0] / 4;
        G += m[1] / 4;
        B += m[2] / 4;
      }
      const c = cw * ch + y * (cw / 2) + x;
      out[c] = Math.round(128 + (-38 * R - 74 * G + 112 * B) / 256);
      out[c + (cw / 2) * (ch / 2)] = Math.round(128 + (112 * R - 94 * G - 18 * B) / 256);
    }
  return out;
}

function maxDiff(a: Buffer, b: Buffer): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('RGBX to I420 (video pictures)', () => {
  it('sizes the coded picture: even sides, halved when downscaled, rounded up', () => {
    expect(codedSize(1920, 1080, 2)).toEqual({ w: 960, h: 540 });
    expect(codedSize(1802, 1082, 2)).toEqual({ w: 902, h: 542 });
    expect(codedSize(640, 480, 1)).toEqual({ w: 640, h: 480 });
    expect(i420Bytes(960, 540)).toBe(960 * 540 * 1.5);
  });

  it('gives white, black and the primaries their BT.601 limited-range values', () => {
    const colours: [number, number, number, number, number, number][] = [
      // R, G, B → Y, U, V
      [255, 255, 255, 235, 128, 128],
      [0, 0, 0, 16, 128, 128],
      [255, 0, 0, 82, 90, 240],
      [0, 255, 0, 144, 54, 34], // 144.5 by the integer coefficients
      [0, 0, 255, 41, 240, 110],
    ];
    for (const [R, G, B, Y, U, V] of colours)
      for (const s of [1, 2] as const) {
        const fb = Buffer.alloc(8 * 8 * 4);
        for (let i = 0; i < 64; i++) fb.set([R, G, B, 0], i * 4);
        const { w, h } = codedSize(8, 8, s);
        const out = rgbxToI420(fb, 8, { x: 0, y: 0, w: 8, h: 8 }, s, Buffer.alloc(i420Bytes(w, h)));
        expect([out[0], out[w * h], out[w * h + (w * h) / 4]]).toEqual([Y, U, V]);
      }
  });

  it('matches the definition within rounding for any region, both scales, aligned or not', () => {
    fc.assert(
      fc.property(
        fc.record({
          fbW: fc.integer({ min: 2, max: 40 }),
          fbH: fc.integer({ min: 2, max: 30 }),
          s: fc.constantFrom(1 as const, 2 as const),
          seed: fc.integer(),
          unaligned: fc.boolean(),
          rx: fc.nat(),
          ry: fc.nat(),
          rw: fc.nat(),
          rh: fc.nat(),
        }),
        ({ fbW, fbH, s, seed, unaligned, rx, ry, rw, rh }) => {
          const x = rx % fbW;
          const y = ry % fbH;
          // even sides inside the framebuffer, as findVideoRegion gives them
          const w = 2 * (1 + (rw % Math.max(1, Math.floor((fbW - x) / 2))));
          const h = 2 * (1 + (rh % Math.max(1, Math.floor((fbH - y) / 2))));
          if (x + w > fbW || y + h > fbH) return;
          const backing = Buffer.alloc(fbW * fbH * 4 + 1);
          const fb = unaligned ? backing.subarray(1) : backing.subarray(0, fbW * fbH * 4);
          let v = seed | 1;
          for (let i = 0; i < fb.length; i++) {
            v ^= v << 13;
            v ^= v >>> 17;
            v ^= v << 5;
            fb[i] = v & 0xff;
          }
          const r = { x, y, w, h };
          const { w: cw, h: ch } = codedSize(w, h, s);
          const got = rgbxToI420(fb, fbW, r, s, Buffer.alloc(i420Bytes(cw, ch)));
          expect(maxDiff(got, reference(fb, fbW, r, s))).toBeLessThanOrEqual(1);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('refuses a wrong buffer or a region outside the framebuffer', () => {
    const fb = Buffer.alloc(16 * 16 * 4);
    const ok = Buffer.alloc(i420Bytes(8, 8));
    expect(() => rgbxToI420(fb, 16, { x: 0, y: 0, w: 16, h: 16 }, 2, Buffer.alloc(10))).toThrow(
      RangeError,
    );
    expect(() => rgbxToI420(fb, 16, { x: 4, y: 0, w: 16, h: 16 }, 2, ok)).toThrow(/outside/);
    expect(() => rgbxToI420(fb, 16, { x: 0, y: 4, w: 16, h: 16 }, 2, ok)).toThrow(/outside/);
  });
});
