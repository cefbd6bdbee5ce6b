import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { bitsPerIndex, packIndices, packedSize, unpackIndices } from '../src/palette.js';

describe('palette index packing', () => {
  it('round-trips for every palette size and any width', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 256 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 20 }),
        fc.integer(),
        (n, w, h, seed) => {
          const idx = new Uint8Array(w * h);
          for (let i = 0; i < idx.length; i++) idx[i] = Math.abs(Math.imul(i + 1, seed | 1)) % n;
          const packed = packIndices(idx, w, h, n);
          expect(packed.length).toBe(packedSize(w, h, n));
          expect([...unpackIndices(packed, w, h, n)]).toEqual([...idx]);
        },
      ),
    );
  });

  it('uses 1 bit per pixel for two colours, with byte-aligned rows', () => {
    expect(bitsPerIndex(2)).toBe(1);
    expect(bitsPerIndex(3)).toBe(2);
    expect(bitsPerIndex(16)).toBe(4);
    expect(bitsPerIndex(17)).toBe(8);
    const packed = packIndices(
      Uint8Array.of(1, 0, 1, 1, 0, 0, 0, 0, 1, /* row 2 */ 1, 1, 1, 1, 1, 1, 1, 1, 1),
      9,
      2,
      2,
    );
    expect([...packed]).toEqual([0b10110000, 0b10000000, 0xff, 0x80]);
  });

  it('refuses truncated input', () => {
    expect(() => unpackIndices(new Uint8Array(3), 9, 2, 2)).toThrow(RangeError);
  });
});
