import pino from 'pino';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { CursorEncoder, type CursorShape } from '../../../src/stream/cursor-encoder.js';

const log = pino({ level: 'silent' });

function shape(w: number, h: number, rgba: [number, number, number, number]): Buffer {
  const px = Buffer.alloc(w * h * 4);
  for (let i = 0; i < w * h; i++) px.set(rgba, i * 4);
  return px;
}

function waitFor(cond: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const poll = () => (cond() ? resolve() : setImmediate(poll));
    poll();
  });
}

describe('CursorEncoder', () => {
  it('announces a shape as a PNG with its hot spot and keeps it as current', async () => {
    const seen: CursorShape[] = [];
    const enc = new CursorEncoder(log, (s) => seen.push(s));
    enc.set(3, 4, 8, 6, shape(8, 6, [255, 0, 0, 255]));
    await waitFor(() => seen.length === 1);
    expect(seen[0]).toMatchObject({ width: 8, height: 6, hotX: 3, hotY: 4 });
    const meta = await sharp(seen[0]!.png).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 8, 6]);
    expect(enc.current).toBe(seen[0]);
  });

  it('a hidden cursor is an empty PNG, announced at once', () => {
    const seen: CursorShape[] = [];
    const enc = new CursorEncoder(log, (s) => seen.push(s));
    enc.set(0, 0, 0, 0, Buffer.alloc(0));
    expect(seen).toHaveLength(1);
    expect(seen[0]!.png.length).toBe(0);
  });

  it('only the newest shape wins when an older one finishes encoding later', async () => {
    const seen: CursorShape[] = [];
    const enc = new CursorEncoder(log, (s) => seen.push(s));
    enc.set(0, 0, 128, 128, shape(128, 128, [0, 255, 0, 255])); // slow to encode
    enc.set(1, 1, 0, 0, Buffer.alloc(0)); // hidden: announced at once
    await new Promise<void>((resolve) => {
      // the large encode has had its chance once a later sharp call has finished
      void sharp(shape(256, 256, [0, 0, 0, 255]), { raw: { width: 256, height: 256, channels: 4 } })
        .png()
        .toBuffer()
        .then(() => resolve());
    });
    expect(seen.map((s) => s.width)).toEqual([0]);
    expect(enc.current?.width).toBe(0);
  });
});
