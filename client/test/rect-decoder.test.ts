import { describe, expect, it } from 'vitest';
import { Codec, copyPayload, decodeFrame, encodeFrame, fillPayload } from '@vdi/shared';
import { decodeRects, peekSeq } from '../src/viewer/rect-decoder';
import { InflateStream } from '../src/viewer/inflate-stream';

/** a stored deflate block: a valid segment of the viewer's zlib stream */
function segment(data: Uint8Array): Uint8Array {
  const n = data.byteLength;
  // the trailing 0x00 is the header of the empty stored block a sync flush ends with; its
  // LEN/NLEN (00 00 FF FF) are the four bytes the server leaves off and the viewer appends
  return Uint8Array.of(0x00, n & 0xff, n >> 8, ~n & 0xff, (~n >> 8) & 0xff, ...data, 0x00);
}

describe('decodeRects', () => {
  it('decodes every rect of a frame, keeping their order', async () => {
    const rgb = new Uint8Array(2 * 2 * 3).fill(9);
    const palette = Uint8Array.of(0, 1, 2, 3); // size 1: colour (1, 2, 3)
    const wire = encodeFrame({
      seq: 42,
      fbWidth: 64,
      fbHeight: 32,
      sentAt: 0,
      flags: 1,
      quality: 80,
      rects: [
        { x: 0, y: 0, w: 64, h: 32, codec: Codec.Fill, payload: fillPayload(10, 20, 30) },
        { x: 4, y: 4, w: 2, h: 2, codec: Codec.DeflateRgb, payload: segment(rgb) },
        {
          x: 8,
          y: 0,
          w: 3,
          h: 1,
          codec: Codec.DeflatePalette,
          payload: Uint8Array.of(palette[0]!, ...segment(Uint8Array.of(...palette.subarray(1), 0))), // colour (1,2,3); 3 px, 1 bit each: one byte
        },
        {
          x: 0,
          y: 10,
          w: 16,
          h: 16,
          codec: Codec.Copy,
          payload: copyPayload({ x: 0, y: 10 }, 1, 2),
        },
      ],
    });
    const frame = await decodeRects(decodeFrame(wire), new InflateStream());
    expect(frame).toMatchObject({ seq: 42, fbWidth: 64, fbHeight: 32, quality: 80, flags: 1 });
    expect(frame.rects.map((r) => r.kind)).toEqual(['fill', 'pixels', 'pixels', 'copy']);
    expect(frame.rects[0]).toMatchObject({ kind: 'fill', color: 'rgba(10,20,30,1)', opaque: true });
    expect(frame.rects[3]).toMatchObject({ kind: 'copy', x: 0, y: 10, srcX: 1, srcY: 2 });
    const pal = frame.rects[2];
    expect(pal?.kind === 'pixels' && [...pal.rgba]).toEqual([
      1, 2, 3, 255, 1, 2, 3, 255, 1, 2, 3, 255,
    ]);
  });

  it('marks a rect that cannot be decoded as failed and still decodes the rest', async () => {
    const wire = encodeFrame({
      seq: 1,
      fbWidth: 8,
      fbHeight: 8,
      sentAt: 0,
      flags: 0,
      quality: 0,
      rects: [
        { x: 0, y: 0, w: 2, h: 2, codec: Codec.DeflateRgb, payload: Uint8Array.of(1, 2, 3) },
        { x: 0, y: 0, w: 8, h: 8, codec: Codec.Fill, payload: fillPayload(0, 0, 0, 128) },
      ],
    });
    const frame = await decodeRects(decodeFrame(wire), new InflateStream());
    expect(frame.rects.map((r) => r.kind)).toEqual(['failed', 'fill']);
    expect(frame.rects[1]).toMatchObject({ opaque: false });
  });
});

describe('peekSeq', () => {
  it('reads the sequence number of a frame whose body is broken', () => {
    const wire = encodeFrame({
      seq: 0xdeadbeef,
      fbWidth: 1,
      fbHeight: 1,
      sentAt: 0,
      flags: 0,
      quality: 0,
      rects: [],
    });
    expect(peekSeq(wire.subarray(0, 10))).toBe(0xdeadbeef);
    expect(peekSeq(Uint8Array.of(0, 1, 2))).toBeUndefined();
    expect(peekSeq(new Uint8Array(20))).toBeUndefined(); // wrong magic
  });
});
