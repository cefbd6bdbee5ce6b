import { describe, expect, it } from 'vitest';
import { PacketType } from 'socket.io-parser';
import { Codec, encodeFrame } from '../src/frame.js';
import { Decoder, Encoder } from '../src/wire.js';

const frame = encodeFrame({
  seq: 3,
  fbWidth: 10,
  fbHeight: 10,
  sentAt: 0,
  flags: 0,
  quality: 0,
  rects: [{ x: 0, y: 0, w: 10, h: 10, codec: Codec.Fill, payload: Uint8Array.of(1, 2, 3, 255) }],
});

function decodeAll(chunks: unknown[]): unknown[] {
  const d = new Decoder();
  const out: unknown[] = [];
  d.on('decoded', (p: unknown) => out.push(p));
  for (const c of chunks) d.add(c);
  return out;
}

describe('one binary message per frame', () => {
  it('encodes a frame event as its bytes alone and decodes it back', () => {
    const chunks = new Encoder().encode({
      type: PacketType.EVENT,
      nsp: '/',
      data: ['frame', frame],
    });
    expect(chunks).toHaveLength(1);
    expect(chunks[0]).toBe(frame);
    expect(decodeAll(chunks)).toEqual([
      { type: PacketType.EVENT, nsp: '/', data: ['frame', frame] },
    ]);
  });

  it('leaves other events, including binary attachments, to the default encoding', () => {
    const png = Uint8Array.of(0x89, 0x50, 0x4e, 0x47);
    const e = new Encoder();
    const cursor = e.encode({
      type: PacketType.EVENT,
      nsp: '/',
      data: ['cursor', { width: 1, png }],
    });
    expect(cursor).toHaveLength(2);
    expect(typeof cursor[0]).toBe('string');
    const text = e.encode({ type: PacketType.EVENT, nsp: '/', data: ['notice', { text: 'hi' }] });
    // a frame right after an attachment-carrying event is still recognised
    const decoded = decodeAll([...cursor, ...text, frame]) as { data: unknown[] }[];
    expect(decoded.map((p) => p.data[0])).toEqual(['cursor', 'notice', 'frame']);
    expect((decoded[0]!.data[1] as { png: Uint8Array }).png).toEqual(png);
  });

  it('an attachment that happens to start with the frame magic is not taken for a frame', () => {
    const e = new Encoder();
    const tricky = Uint8Array.of(0xf7, 1, 2);
    const chunks = e.encode({
      type: PacketType.EVENT,
      nsp: '/',
      data: ['cursor', { png: tricky }],
    });
    const decoded = decodeAll(chunks) as { data: unknown[] }[];
    expect(decoded.map((p) => p.data[0])).toEqual(['cursor']);
  });

  it('refuses unexpected binary data', () => {
    expect(() => decodeAll([Uint8Array.of(1, 2, 3)])).toThrow();
  });
});
