import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { Codec, decodeFrame, readCopyPayload, FrameFlags, type Frame } from '@vdi/shared';
import { ManualClock } from '../../../src/clock.js';
import { DesktopStream } from '../../../src/stream/desktop-stream.js';
import { Viewer } from '../../../src/stream/viewer.js';

const log = pino({ level: 'silent' });

function setup(w = 256, h = 128, maxInFlight = 2) {
  const clock = new ManualClock();
  const stream = new DesktopStream('d1', clock, log, { cursor: () => undefined, clipboard: () => undefined });
  stream.resize(w, h);
  const frames: Frame[] = [];
  const errors: unknown[] = [];
  const viewer = new Viewer('v1', stream, (b) => frames.push(decodeFrame(b)), clock, maxInFlight, (e) => errors.push(e));
  stream.viewers.add(viewer);
  // encodes run on the libuv pool: wait until no new frame has appeared for a while
  const settle = async () => {
    let n = -1;
    while (n !== frames.length) {
      n = frames.length;
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const paint = (x: number, y: number, pw: number, ph: number, rgb: [number, number, number]) => {
    const px = Buffer.alloc(pw * ph * 4);
    for (let i = 0; i < pw * ph; i++) px.set([...rgb, 0], i * 4);
    stream.putPixels(x, y, pw, ph, px);
  };
  return { clock, stream, viewer, frames, errors, settle, paint };
}

describe('Viewer pacing', () => {
  it('starts with a keyframe covering the whole framebuffer', async () => {
    const { stream, frames, settle } = setup();
    stream.updateEnd();
    await settle();
    expect(frames).toHaveLength(1);
    expect(frames[0]!.flags & FrameFlags.Keyframe).toBeTruthy();
    expect(frames[0]!.rects).toEqual([expect.objectContaining({ x: 0, y: 0, w: 256, h: 128, codec: Codec.Fill })]);
  });

  it('keeps at most maxInFlight frames unacknowledged and coalesces damage meanwhile', async () => {
    const { stream, viewer, frames, settle, paint } = setup(256, 128, 2);
    stream.updateEnd();
    await settle();
    for (let i = 0; i < 10; i++) {
      paint(i * 16, 0, 16, 16, [i * 20, 0, 0]);
      stream.updateEnd();
      await settle();
    }
    expect(frames).toHaveLength(2); // keyframe + one more; the rest wait
    viewer.ack(frames[1]!.seq); // acks everything up to it
    await settle();
    expect(frames).toHaveLength(3);
    // the coalesced frame carries the newest pixels of all pending damage, in few rects
    const last = frames[2]!;
    expect(last.rects.length).toBeLessThanOrEqual(3);
    const covered = last.rects.reduce((a, r) => a + r.w * r.h, 0);
    expect(covered).toBeGreaterThanOrEqual(16 * 16 * 8);
  });

  it('ignores unknown and duplicate acks', async () => {
    const { stream, viewer, frames, settle, paint } = setup(64, 64, 1);
    stream.updateEnd();
    await settle();
    viewer.ack(999);
    paint(0, 0, 8, 8, [1, 2, 3]);
    stream.updateEnd();
    await settle();
    expect(frames).toHaveLength(1);
    viewer.ack(frames[0]!.seq);
    viewer.ack(frames[0]!.seq);
    await settle();
    expect(frames).toHaveLength(2);
  });

  it('turns a CopyRect into a copy op when the client has the source', async () => {
    const { stream, viewer, frames, settle, paint } = setup(128, 128, 2);
    stream.updateEnd();
    await settle();
    viewer.ack(frames[0]!.seq);
    paint(0, 0, 32, 32, [200, 0, 0]);
    stream.updateEnd();
    await settle();
    viewer.ack(frames[1]!.seq);
    stream.copyRect(0, 0, 64, 64, 32, 32);
    stream.updateEnd();
    await settle();
    const f = frames[2]!;
    expect(f.rects).toHaveLength(1);
    expect(f.rects[0]!.codec).toBe(Codec.Copy);
    expect(readCopyPayload(f.rects[0]!.payload)).toEqual({ srcX: 0, srcY: 0 });
    expect(stream.fb[(64 * 128 + 64) * 4]).toBe(200);
  });

  it('sends pixels instead of a copy when the source is still pending', async () => {
    const { stream, frames, settle, paint } = setup(128, 128, 1);
    stream.updateEnd();
    await settle(); // keyframe in flight, not acked
    paint(0, 0, 32, 32, [0, 200, 0]);
    stream.copyRect(0, 0, 64, 64, 32, 32);
    stream.updateEnd();
    await settle();
    expect(frames).toHaveLength(1);
  });

  it('copies overlapping regions in the mirror correctly', () => {
    const { stream } = setup(64, 64);
    for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) stream.fb.set([x, y, 0, 0], (y * 64 + x) * 4);
    stream.copyRect(0, 0, 0, 8, 64, 40); // move down by 8, overlapping
    for (let y = 8; y < 48; y++) expect(stream.fb[(y * 64 + 5) * 4 + 1]).toBe(y - 8);
    stream.copyRect(0, 20, 0, 10, 64, 20); // move up
    for (let y = 10; y < 30; y++) expect(stream.fb[(y * 64 + 5) * 4 + 1]).toBe(y + 10 - 8);
  });

  it('re-sends a lossy region losslessly once it stops changing', async () => {
    const { clock, stream, viewer, frames, settle } = setup(256, 256, 4);
    stream.updateEnd();
    await settle();
    viewer.ack(frames[0]!.seq);
    const noise = (seed: number) => {
      const px = Buffer.alloc(128 * 128 * 4);
      for (let i = 0; i < px.length; i++) px[i] = Math.imul(i + seed, 2654435761) >>> 24;
      return px;
    };
    // animate: many updates in a short time make the region hot
    for (let i = 0; i < 8; i++) {
      clock.advance(30);
      stream.putPixels(0, 0, 128, 128, noise(i));
      stream.updateEnd();
      await settle();
      viewer.ack(frames.at(-1)!.seq);
    }
    expect(frames.some((f) => f.rects.some((r) => r.codec === Codec.Jpeg))).toBe(true);
    // quiet for a while: the refresh timer re-sends it losslessly
    clock.advance(2000);
    await new Promise((r) => setTimeout(r, 400));
    await settle();
    const last = frames.at(-1)!;
    expect(last.rects.every((r) => r.codec !== Codec.Jpeg)).toBe(true);
    expect(last.flags & FrameFlags.Lossless).toBeTruthy();
  });

  it('memory stays bounded for a viewer that never acks', async () => {
    const { stream, frames, settle, paint } = setup(512, 512, 2);
    stream.updateEnd();
    await settle();
    for (let i = 0; i < 500; i++) {
      paint((i * 13) % 480, (i * 7) % 480, 32, 32, [i % 255, 0, 0]);
      stream.updateEnd();
    }
    await settle();
    expect(frames.length).toBeLessThanOrEqual(2);
  });
});
