import { describe, expect, expectTypeOf, it } from 'vitest';
import fc from 'fast-check';
import {
  Codec,
  FRAME_FIXED_HEADER_BYTES,
  FRAME_VERSION,
  FrameFormatError,
  FrameVersionError,
  copyPayload,
  decodeFrame,
  encodeFrame,
  readCopyPayload,
  readVideoPayload,
  videoPayload,
  type Frame,
  type VideoChunk,
} from '../src/frame.js';

const codecs = Object.values(Codec);

const frameArb = fc
  .record({
    fbWidth: fc.integer({ min: 1, max: 65535 }),
    fbHeight: fc.integer({ min: 1, max: 65535 }),
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
        {
          x: 10,
          y: 0,
          w: 10,
          h: 10,
          codec: Codec.Copy,
          payload: copyPayload({ x: 10, y: 0 }, 0, 0),
        },
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
    // the first rect's codec follows the three one-byte varints (20, 20, 1)
    const codecAt = FRAME_FIXED_HEADER_BYTES + 3;
    expect(badCodec[codecAt]).toBe(Codec.Png);
    badCodec[codecAt] = 200;
    expect(() => decodeFrame(badCodec)).toThrow(/unknown codec/);
    badCodec[codecAt] = 4; // unassigned (no server ever sent it)
    expect(() => decodeFrame(badCodec)).toThrow(/unknown codec 4/);
  });

  it('lays a small rect near the last one out in a few bytes', () => {
    const wire = encodeFrame({
      seq: 300,
      fbWidth: 1920,
      fbHeight: 1080,
      sentAt: 5,
      flags: 0,
      quality: 0,
      rects: [
        { x: 100, y: 200, w: 8, h: 16, codec: Codec.DeflateRgb, payload: new Uint8Array(40) },
        { x: 92, y: 200, w: 8, h: 16, codec: Codec.Fill, payload: new Uint8Array(4) },
      ],
    });
    // header 12 + 2 + 2 + 1; first rect 1 + 2 + 2 + 1 + 1 + 1 (100 → 200 and 200 → 400 zigzagged);
    // second 1 + 1 (−8 → 15) + 1 + 1 + 1 + 1; payloads 44
    expect(wire.byteLength).toBe(17 + 8 + 6 + 44);
    expect(wire[1]).toBe(FRAME_VERSION);
    expect(new DataView(wire.buffer).getUint32(4, true)).toBe(300);
    expect(decodeFrame(wire).rects.map((r) => [r.x, r.y])).toEqual([
      [100, 200],
      [92, 200],
    ]);
  });

  it('refuses overlong, too long and too large varints and framebuffers over 65535', () => {
    const head = (...varints: number[]) =>
      Uint8Array.of(0xf7, FRAME_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ...varints);
    expect(decodeFrame(head(10, 10, 0)).rects).toEqual([]);
    expect(() => decodeFrame(head(0x8a, 0x00, 10, 0))).toThrow(/overlong/);
    expect(() => decodeFrame(head(0x80, 0x80, 0x80, 0x80, 0x80, 0x01))).toThrow(/too long/);
    expect(() => decodeFrame(head(0xff, 0xff, 0xff, 0xff, 0x1f, 10, 0))).toThrow(/too large/);
    expect(() => decodeFrame(head(0x80, 0x80, 0x04, 10, 0))).toThrow(/framebuffer too large/);
    expect(() => decodeFrame(head(10, 10, 0x81, 0x20))).toThrow(/too many rects/);
    // a rect whose delta walks left of the framebuffer
    expect(() => decodeFrame(head(10, 10, 1, Codec.Fill, 1, 0, 1, 1, 4, 1, 2, 3, 4))).toThrow(
      /out of bounds/,
    );
    expect(() =>
      encodeFrame({
        seq: 0,
        fbWidth: 65536,
        fbHeight: 1,
        sentAt: 0,
        flags: 0,
        quality: 0,
        rects: [],
      }),
    ).toThrow(/out of range/);
  });

  it('tells a frame of another layout version apart from a broken one', () => {
    const bytes = encodeFrame({
      seq: 3,
      fbWidth: 8,
      fbHeight: 8,
      sentAt: 0,
      flags: 0,
      quality: 0,
      rects: [],
    });
    bytes[1] = 1;
    const err = (() => {
      try {
        decodeFrame(bytes);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(FrameVersionError);
    expect((err as FrameVersionError).version).toBe(1);
    expect(() => decodeFrame(bytes.subarray(0, 5))).toThrow(FrameFormatError);
    expect(() => decodeFrame(bytes.subarray(0, 5))).not.toThrow(FrameVersionError);
  });

  it('reads copy payloads', () => {
    const at = { x: 310, y: 65500 };
    const payload = copyPayload(at, 300, 65535);
    expect(readCopyPayload({ ...at, payload })).toEqual({ srcX: 300, srcY: 65535 });
    // a window moved by a few pixels: one byte each way
    expect(copyPayload(at, 305, 65502).byteLength).toBe(2);
    fc.assert(
      fc.property(
        fc.nat({ max: 65535 }),
        fc.nat({ max: 65535 }),
        fc.nat({ max: 65535 }),
        fc.nat({ max: 65535 }),
        (x, y, srcX, srcY) => {
          const p = copyPayload({ x, y }, srcX, srcY);
          expect(readCopyPayload({ x, y, payload: p })).toEqual({ srcX, srcY });
        },
      ),
    );
    expect(() => readCopyPayload({ ...at, payload: new Uint8Array(0) })).toThrow(/truncated/);
    expect(() => readCopyPayload({ ...at, payload: Uint8Array.of(0, 0, 0) })).toThrow(/too long/);
    // a source left of the framebuffer: x 310 − 311 (zigzag 621 = ED 04), y + 0
    expect(() => readCopyPayload({ ...at, payload: Uint8Array.of(0xed, 0x04, 0) })).toThrow(
      /out of range/,
    );
  });

  describe('video chunks', () => {
    const chunkArb = fc.record({
      regionId: fc.nat({ max: 255 }),
      key: fc.boolean(),
      codec: fc.stringMatching(/^[a-zA-Z0-9.]{1,64}$/),
      data: fc.uint8Array({ minLength: 1, maxLength: 256 }),
    });

    it('round-trip any chunk, inside a frame too', () => {
      fc.assert(
        fc.property(chunkArb, (c) => {
          const payload = videoPayload(c);
          const frame = decodeFrame(
            encodeFrame({
              seq: 7,
              fbWidth: 640,
              fbHeight: 480,
              sentAt: 0,
              flags: 0,
              quality: 0,
              rects: [{ x: 0, y: 0, w: 640, h: 480, codec: Codec.Video, payload }],
            }),
          );
          expect(frame.rects[0]!.codec).toBe(Codec.Video);
          const back = readVideoPayload(frame.rects[0]!.payload);
          expect({ ...back, data: [...back.data] }).toEqual({ ...c, data: [...c.data] });
        }),
      );
    });

    it('reject bad codec strings, unknown flags and empty pictures', () => {
      const good = videoPayload({
        regionId: 1,
        key: true,
        codec: 'avc1.42E01F',
        data: Uint8Array.of(0, 0, 1),
      });
      expect(readVideoPayload(good).codec).toBe('avc1.42E01F');
      expect(() =>
        videoPayload({ regionId: 1, key: false, codec: 'a b', data: Uint8Array.of(1) }),
      ).toThrow(FrameFormatError);
      expect(() =>
        videoPayload({ regionId: 256, key: false, codec: 'vp8', data: Uint8Array.of(1) }),
      ).toThrow(/region/);
      const flags = good.slice();
      flags[1] = 2;
      expect(() => readVideoPayload(flags)).toThrow(/flags/);
      const control = good.slice();
      control[4] = 0x0a;
      expect(() => readVideoPayload(control)).toThrow(/ASCII/);
      expect(() => readVideoPayload(good.subarray(0, 3 + 11))).toThrow(/no picture/);
      expect(() => readVideoPayload(Uint8Array.of(1, 1))).toThrow(/truncated/);
      const long = good.slice();
      long[2] = 200;
      expect(() => readVideoPayload(long)).toThrow(/codec length/);
    });

    it('have the types both ends build on', () => {
      expectTypeOf(Codec.Video).toEqualTypeOf<7>();
      expectTypeOf(readVideoPayload).returns.toEqualTypeOf<VideoChunk>();
      expectTypeOf<VideoChunk>().toHaveProperty('key').toEqualTypeOf<boolean>();
      expectTypeOf<VideoChunk>().toHaveProperty('codec').toEqualTypeOf<string>();
      expectTypeOf<VideoChunk>().toHaveProperty('regionId').toEqualTypeOf<number>();
    });
  });
});
