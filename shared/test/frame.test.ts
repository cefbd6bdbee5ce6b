import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  Codec,
  FRAME_HEADER_BYTES,
  FrameFormatError,
  copyPayload,
  decodeFrame,
  encodeFrame,
  readCopyPayload,
  type Frame,
} from '../src/frame.js';

const codecs = Object.values(Codec);

const frameArb = fc
  .record({
    fbWidth: fc.integer({ min: 1, max: 4096 }),
    fbHeight: fc.integer({ min: 1, max: 4096 }),
  })
  .chain(({ fbWidth, fbHeight }) =>
    fc.record({
      seq: fc.nat({ max: 0xffffffff }),
      fbWidth: fc.constant(fbWidth),
      fbHeight: fc.constant(fbHeight),
      sentAt: fc.nat({ max: 0xffffffff }),
      flags: fc.nat({ max: 3 }),
      quality: fc.nat({ max: 100 }),
      rects: fc.array(
        fc
          .record({ x: fc.nat({ max: fbWidth - 1 }), y: fc.nat({ max: fbHeight - 1 }) })
          .chain(({ x, y }) =>
            fc.record({
              x: fc.constant(x),
              y: fc.constant(y),
              w: fc.integer({ min: 1, max: fbWidth - x }),
              h: fc.integer({ min: 1, max: fbHeight - y }),
              codec: fc.constantFrom(...codecs),
              payload: fc.uint8Array({ maxLength: 64 }),
            }),
          ),
        { maxLength: 20 },
      ),
    }),
  );

describe('frame layout', () => {
  it('round-trips any valid frame', () => {
    fc.assert(
      fc.property(frameArb, (frame: Frame) => {
        const decoded = decodeFrame(encodeFrame(frame));
        expect(decoded.seq).toBe(frame.seq);
        expect(decoded.fbWidth).toBe(frame.fbWidth);
        expect(decoded.sentAt).toBe(frame.sentAt);
        expect(decoded.flags).toBe(frame.flags);
        expect(decoded.quality).toBe(frame.quality);
        expect(decoded.rects.map((r) => ({ ...r, payload: [...r.payload] }))).toEqual(
          frame.rects.map((r) => ({ ...r, payload: [...r.payload] })),
        );
      }),
    );
  });

  it('rejects every truncation of a valid frame', () => {
    const bytes = encodeFrame({
      seq: 7,
      fbWidth: 100,
      fbHeight: 50,
      sentAt: 1,
      flags: 0,
      quality: 0,
      rects: [
        { x: 0, y: 0, w: 10, h: 10, codec: Codec.Fill, payload: Uint8Array.of(1, 2, 3, 255) },
        { x: 10, y: 0, w: 10, h: 10, codec: Codec.Copy, payload: copyPayload(0, 0) },
      ],
    });
    for (let n = 0; n < bytes.length; n++) {
      expect(() => decodeFrame(bytes.subarray(0, n))).toThrow(FrameFormatError);
    }
    expect(() => decodeFrame(Uint8Array.of(...bytes, 0))).toThrow(/trailing/);
  });

  it('rejects out-of-bounds rects and unknown codecs', () => {
    const good: Frame = {
      seq: 1,
      fbWidth: 20,
      fbHeight: 20,
      sentAt: 0,
      flags: 0,
      quality: 0,
      rects: [{ x: 15, y: 0, w: 5, h: 5, codec: Codec.Png, payload: new Uint8Array(3) }],
    };
    expect(decodeFrame(encodeFrame(good)).rects).toHaveLength(1);
    const wide = encodeFrame({ ...good, rects: [{ ...good.rects[0]!, w: 6 }] });
    expect(() => decodeFrame(wide)).toThrow(/out of bounds/);
    const badCodec = encodeFrame(good);
    badCodec[FRAME_HEADER_BYTES + 8] = 200;
    expect(() => decodeFrame(badCodec)).toThrow(/unknown codec/);
    badCodec[FRAME_HEADER_BYTES + 8] = 4; // unassigned (no server ever sent it)
    expect(() => decodeFrame(badCodec)).toThrow(/unknown codec 4/);
  });

  it('reads copy payloads', () => {
    expect(readCopyPayload(copyPayload(300, 65535))).toEqual({ srcX: 300, srcY: 65535 });
    expect(() => readCopyPayload(new Uint8Array(3))).toThrow();
  });
});
