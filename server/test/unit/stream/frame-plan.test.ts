import { Codec, FrameFlags, decodeFrame, readCopyPayload } from '@vdi/shared';
import { describe, expect, it } from 'vitest';
import { planFrame } from '../../../src/stream/frame-plan.js';
import { writeFrame } from '../../../src/stream/frame-writer.js';
import type { EncodedRect } from '../../../src/stream/encode.js';

describe('planFrame', () => {
  const copy = { srcX: 0, srcY: 0, x: 0, y: 16, w: 64, h: 64 };

  it('keeps quiet rects whole and lossless, after the copies', () => {
    const big = { x: 0, y: 0, w: 1920, h: 1080 };
    const plan = planFrame([copy], [big], () => false);
    expect(plan.copies).toEqual([copy]);
    expect(plan.jobs).toEqual([{ ...big, allowLossy: false }]);
  });

  it('cuts a large animated rect into 16-row-aligned bands that tile it exactly', () => {
    const big = { x: 8, y: 4, w: 1920, h: 1080 };
    const { jobs } = planFrame([], [big], () => true);
    expect(jobs.length).toBeGreaterThan(1);
    let y = big.y;
    for (const [i, j] of jobs.entries()) {
      expect(j).toMatchObject({ x: 8, w: 1920, y, allowLossy: true });
      if (i < jobs.length - 1) expect(j.h % 16).toBe(0);
      y += j.h;
    }
    expect(y).toBe(big.y + big.h);
  });

  it('leaves a small animated rect whole', () => {
    const small = { x: 0, y: 0, w: 256, h: 256 };
    expect(planFrame([], [small], () => true).jobs).toEqual([{ ...small, allowLossy: true }]);
  });
});

describe('writeFrame', () => {
  const rect = (lossy: boolean): EncodedRect => ({
    x: 0,
    y: 0,
    w: 8,
    h: 8,
    codec: lossy ? Codec.Jpeg : Codec.Fill,
    payload: Uint8Array.of(1, 2, 3, 255),
    lossy,
  });
  const base = { seq: 7, fbWidth: 64, fbHeight: 64, sentAt: 1234, quality: 55 };

  it('lays out copies first, then the pixels, with the flags it was given', () => {
    const f = decodeFrame(
      writeFrame({
        ...base,
        keyframe: true,
        lossless: true,
        copies: [{ srcX: 8, srcY: 0, x: 16, y: 16, w: 8, h: 8 }],
        rects: [rect(false)],
      }),
    );
    expect(f).toMatchObject({ seq: 7, fbWidth: 64, fbHeight: 64, sentAt: 1234, quality: 0 });
    expect(f.flags).toBe(FrameFlags.Keyframe | FrameFlags.Lossless);
    expect(f.rects.map((r) => r.codec)).toEqual([Codec.Copy, Codec.Fill]);
    expect(readCopyPayload(f.rects[0]!)).toEqual({ srcX: 8, srcY: 0 });
  });

  it('states the quality only when a rect of this frame is lossy', () => {
    const f = decodeFrame(
      writeFrame({ ...base, keyframe: false, lossless: false, copies: [], rects: [rect(true)] }),
    );
    expect(f.quality).toBe(55);
    expect(f.flags).toBe(0);
  });
});
