import { describe, expect, it } from 'vitest';
import pino from 'pino';
import {
  Codec,
  decodeFrame,
  readCopyPayload,
  FrameFlags,
  unpackIndices,
  type Frame,
} from '@vdi/shared';
import { ManualClock } from '../../../src/clock.js';
import { DesktopStream } from '../../../src/stream/desktop-stream.js';
import { InflateSegments } from '../../../src/stream/deflate-stream.js';
import { ManualTimers } from './helpers/manual-timers.js';

const log = pino({ level: 'silent' });

/** photo-like pixels: every byte different, many colours */
function noise(pw: number, ph: number, seed: number): Buffer {
  const px = Buffer.alloc(pw * ph * 4);
  for (let i = 0; i < px.length; i++) px[i] = Math.imul(i + seed, 2654435761) >>> 24;
  return px;
}

function setup(w = 256, h = 128, maxInFlight = 2) {
  const clock = new ManualClock();
  const stream = new DesktopStream('d1', clock, log, {
    cursor: () => undefined,
    clipboard: () => undefined,
  });
  stream.resize(w, h);
  stream.idle(); // the parser applies a size once it has read what arrived
  const frames: Frame[] = [];
  const errors: unknown[] = [];
  const timers = new ManualTimers();
  const viewer = stream.attach({
    send: (b) => frames.push(decodeFrame(b)),
    maxInFlight,
    onError: (e) => errors.push(e),
    setTimer: timers.schedule,
  });
  // encodes run on the libuv pool: wait until the viewer has sent what it can
  const settle = async () => {
    while (viewer.encoding) await new Promise((r) => setTimeout(r, 1));
  };
  const paint = (x: number, y: number, pw: number, ph: number, rgb: [number, number, number]) => {
    const px = Buffer.alloc(pw * ph * 4);
    for (let i = 0; i < pw * ph; i++) px.set([...rgb, 0], i * 4);
    stream.putPixels(x, y, pw, ph, px);
  };
  return { clock, timers, stream, viewer, frames, errors, settle, paint };
}

describe('Viewer pacing', () => {
  it('starts with a keyframe covering the whole framebuffer', async () => {
    const { stream, frames, settle } = setup();
    stream.updateEnd();
    await settle();
    expect(frames).toHaveLength(1);
    expect(frames[0]!.flags & FrameFlags.Keyframe).toBeTruthy();
    expect(frames[0]!.rects).toEqual([
      expect.objectContaining({ x: 0, y: 0, w: 256, h: 128, codec: Codec.Fill }),
    ]);
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
    expect(viewer.ack(999)).toBe(false);
    paint(0, 0, 8, 8, [1, 2, 3]);
    stream.updateEnd();
    await settle();
    expect(frames).toHaveLength(1);
    expect(viewer.ack(frames[0]!.seq)).toBe(true);
    expect(viewer.ack(frames[0]!.seq)).toBe(false);
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
    expect(readCopyPayload(f.rects[0]!)).toEqual({ srcX: 0, srcY: 0 });
    expect(stream.fb[(64 * 128 + 64) * 4]).toBe(200);
  });

  it('sends a copy plus the stale part when the source is still pending', async () => {
    const { stream, frames, settle, paint, viewer } = setup(128, 128, 1);
    stream.updateEnd();
    await settle(); // keyframe in flight, not acked
    paint(0, 0, 16, 16, [0, 200, 0]); // pending damage inside the copy's source
    stream.copyRect(0, 0, 64, 64, 32, 32);
    stream.updateEnd();
    await settle();
    expect(frames).toHaveLength(1);
    viewer.ack(frames[0]!.seq);
    await settle();
    const f = frames[1]!;
    expect(f.rects[0]!.codec).toBe(Codec.Copy);
    // the stale 16x16 block is re-sent where the copy put it (and where it was painted)
    const covers = (x: number, y: number) =>
      f.rects.slice(1).some((r) => x >= r.x && x < r.x + r.w && y >= r.y && y < r.y + r.h);
    expect(covers(64, 64)).toBe(true);
    expect(covers(79, 79)).toBe(true);
    expect(covers(0, 0)).toBe(true);
    // but not the rest of the copied area, which the client already has
    expect(covers(90, 90)).toBe(false);
  });

  it('replays a canvas correctly through copies and damage in any order', async () => {
    const W = 96;
    const H = 96;
    const { stream, frames, settle, viewer } = setup(W, H, 1);
    const rnd = (n: number) => Math.floor(Math.random() * n);
    const canvas = Buffer.alloc(W * H * 4);
    const rx = new InflateSegments();
    const apply = async () => {
      // a tiny client: applies frames in order, like the browser does
      for (const f of frames.splice(0)) {
        if (f.flags & FrameFlags.Keyframe) rx.reset();
        for (const r of f.rects) {
          if (r.codec === Codec.Copy) {
            const { srcX, srcY } = readCopyPayload(r);
            const tmp = Buffer.alloc(r.w * r.h * 4);
            for (let y = 0; y < r.h; y++)
              canvas.copy(
                tmp,
                y * r.w * 4,
                ((srcY + y) * W + srcX) * 4,
                ((srcY + y) * W + srcX + r.w) * 4,
              );
            for (let y = 0; y < r.h; y++)
              tmp.copy(canvas, ((r.y + y) * W + r.x) * 4, y * r.w * 4, (y + 1) * r.w * 4);
          } else if (r.codec === Codec.Fill) {
            for (let y = 0; y < r.h; y++)
              for (let x = 0; x < r.w; x++)
                canvas.set(
                  [r.payload[0]!, r.payload[1]!, r.payload[2]!],
                  ((r.y + y) * W + r.x + x) * 4,
                );
          } else if (r.codec === Codec.DeflatePalette) {
            const n = r.payload[0]! + 1;
            const plain = rx.inflate(r.payload.subarray(1));
            const pal = plain.subarray(0, n * 3);
            const idx = unpackIndices(plain.subarray(n * 3), r.w, r.h, n);
            for (let i = 0; i < r.w * r.h; i++) {
              const k = idx[i]!;
              canvas.set(
                [pal[k * 3]!, pal[k * 3 + 1]!, pal[k * 3 + 2]!],
                ((r.y + Math.floor(i / r.w)) * W + r.x + (i % r.w)) * 4,
              );
            }
          } else if (r.codec === Codec.DeflateRgb) {
            const rgb = rx.inflate(r.payload);
            for (let i = 0; i < r.w * r.h; i++)
              canvas.set(
                [rgb[i * 3]!, rgb[i * 3 + 1]!, rgb[i * 3 + 2]!],
                ((r.y + Math.floor(i / r.w)) * W + r.x + (i % r.w)) * 4,
              );
          } else throw new Error(`codec ${r.codec} not expected here`);
        }
        viewer.ack(f.seq);
      }
    };
    stream.updateEnd();
    for (let step = 0; step < 60; step++) {
      if (rnd(2)) {
        const w = 1 + rnd(30);
        const h = 1 + rnd(30);
        const px = Buffer.alloc(w * h * 4);
        const c = [rnd(4) * 80, rnd(4) * 80, rnd(4) * 80];
        for (let i = 0; i < w * h; i++) px.set([...c, 0], i * 4);
        stream.putPixels(rnd(W - w), rnd(H - h), w, h, px);
      } else {
        const w = 1 + rnd(40);
        const h = 1 + rnd(40);
        stream.copyRect(rnd(W - w), rnd(H - h), rnd(W - w), rnd(H - h), w, h);
      }
      stream.updateEnd();
      if (rnd(3) === 0) {
        await settle();
        await apply();
      }
    }
    for (let i = 0; i < 5; i++) {
      await settle();
      await apply();
    }
    for (let i = 0; i < W * H; i++) {
      expect([canvas[i * 4], canvas[i * 4 + 1], canvas[i * 4 + 2]]).toEqual([
        stream.fb[i * 4],
        stream.fb[i * 4 + 1],
        stream.fb[i * 4 + 2],
      ]);
    }
  });

  it('turns scrolled content into a copy when the server sends no CopyRect', async () => {
    const { stream, viewer, frames, settle } = setup(160, 128, 2);
    const line = (n: number) => {
      const px = Buffer.alloc(160 * 16 * 4);
      // a "text line": a few dark marks at positions that depend on the line number
      for (let i = 0; i < px.length; i += 4) px.set([255, 255, 255, 0], i);
      for (let k = 0; k < 6; k++) {
        const x = (n * 37 + k * 23) % 150;
        for (let yy = 4; yy < 12; yy++) px.set([0, 0, 0, 0], (yy * 160 + x) * 4);
      }
      return px;
    };
    for (let n = 0; n < 8; n++) stream.putPixels(0, n * 16, 160, 16, line(n));
    stream.detectMoves(true);
    stream.updateEnd();
    await settle();
    viewer.ack(frames.at(-1)!.seq);
    await settle();
    const before = frames.length;
    // the console scrolls up one line: lines 1..7 move up, line 8 appears at the bottom
    for (let n = 1; n < 9; n++) stream.putPixels(0, (n - 1) * 16, 160, 16, line(n));
    stream.updateEnd();
    await settle();
    const f = frames[before]!;
    const copies = f.rects.filter((r) => r.codec === Codec.Copy);
    expect(copies).toHaveLength(1);
    expect(copies[0]).toMatchObject({ x: 0, y: 0, w: 160, h: 112 });
    expect(readCopyPayload(copies[0]!)).toEqual({ srcX: 0, srcY: 16 });
    const pixels = f.rects.filter((r) => r.codec !== Codec.Copy).reduce((a, r) => a + r.w * r.h, 0);
    expect(pixels).toBeLessThanOrEqual(160 * 16);
  });

  it('merges the bands of a window move into one copy that gives the same picture', async () => {
    const { stream, viewer, frames, settle } = setup(128, 128, 2);
    for (let y = 0; y < 128; y++)
      for (let x = 0; x < 128; x++) stream.fb.set([x, y, (x * y) & 255, 0], (y * 128 + x) * 4);
    stream.updateEnd();
    await settle();
    viewer.ack(frames.at(-1)!.seq);
    const before = Buffer.from(stream.fb);
    // a 32x32 window at (10,10) moves down by 8: the server sends the lower band first
    stream.copyRect(10, 26, 10, 34, 32, 16);
    stream.copyRect(10, 10, 10, 18, 32, 16);
    stream.updateEnd();
    await settle();
    const f = frames.at(-1)!;
    expect(f.rects).toHaveLength(1);
    const c = f.rects[0]!;
    expect(c).toMatchObject({ codec: Codec.Copy, x: 10, y: 18, w: 32, h: 32 });
    expect(readCopyPayload(c)).toEqual({ srcX: 10, srcY: 10 });
    // one copy from the earlier picture == the two bands in order (what the mirror did)
    for (let y = 0; y < 32; y++)
      for (let x = 0; x < 32; x++) {
        const from = ((10 + y) * 128 + 10 + x) * 4;
        const to = ((18 + y) * 128 + 10 + x) * 4;
        expect([stream.fb[to], stream.fb[to + 1], stream.fb[to + 2]]).toEqual([
          before[from],
          before[from + 1],
          before[from + 2],
        ]);
      }
  });

  it('does not merge copies when one reads what the other wrote', async () => {
    const { stream, viewer, frames, settle } = setup(128, 128, 2);
    stream.updateEnd();
    await settle();
    viewer.ack(frames.at(-1)!.seq);
    // top band first: the second copy's source is where the first one wrote
    stream.copyRect(10, 10, 10, 18, 32, 16);
    stream.copyRect(10, 26, 10, 34, 32, 16);
    stream.updateEnd();
    await settle();
    expect(frames.at(-1)!.rects.filter((r) => r.codec === Codec.Copy)).toHaveLength(2);
  });

  it('copies overlapping regions in the mirror correctly', () => {
    const { stream } = setup(64, 64);
    for (let y = 0; y < 64; y++)
      for (let x = 0; x < 64; x++) stream.fb.set([x, y, 0, 0], (y * 64 + x) * 4);
    stream.copyRect(0, 0, 0, 8, 64, 40); // move down by 8, overlapping
    for (let y = 8; y < 48; y++) expect(stream.fb[(y * 64 + 5) * 4 + 1]).toBe(y - 8);
    stream.copyRect(0, 20, 0, 10, 64, 20); // move up
    for (let y = 10; y < 30; y++) expect(stream.fb[(y * 64 + 5) * 4 + 1]).toBe(y + 10 - 8);
  });

  it('re-sends a lossy region losslessly once it stops changing', async () => {
    const { clock, timers, stream, viewer, frames, settle } = setup(256, 256, 4);
    stream.updateEnd();
    await settle();
    viewer.ack(frames[0]!.seq);
    // animate: many updates in a short time make the region hot
    for (let i = 0; i < 8; i++) {
      clock.advance(30);
      stream.putPixels(0, 0, 128, 128, noise(128, 128, i));
      stream.updateEnd();
      await settle();
      viewer.ack(frames.at(-1)!.seq);
    }
    expect(frames.some((f) => f.rects.some((r) => r.codec === Codec.Jpeg))).toBe(true);
    // quiet for a while: the refresh timer re-sends it losslessly
    clock.advance(2000);
    timers.fireAll();
    await settle();
    const last = frames.at(-1)!;
    expect(last.rects.every((r) => r.codec !== Codec.Jpeg)).toBe(true);
    expect(last.flags & FrameFlags.Lossless).toBeTruthy();
  });

  it('a big photo-like change goes lossy before it is hot, and lossless again once settled', async () => {
    const { clock, timers, stream, viewer, frames, settle } = setup(1024, 640, 4);
    stream.updateEnd();
    await settle();
    viewer.ack(frames[0]!.seq);
    const change = async (x: number, pw: number, ph: number, seed: number) => {
      clock.advance(1000);
      stream.putPixels(x, 0, pw, ph, noise(pw, ph, seed));
      stream.updateEnd();
      await settle();
      const f = frames.at(-1)!;
      viewer.ack(f.seq);
      return f;
    };
    // a small one stays exact: a thumbnail, an icon
    const small = await change(768, 128, 128, 1);
    expect(small.rects.map((r) => r.codec)).not.toContain(Codec.Jpeg);
    expect(small.flags & FrameFlags.Lossless).toBeTruthy();
    // a still desktop, one change of 512×512 (the first picture of a full-screen video, a
    // photo opened): JPEG at once, not a lossless image the browser takes long to draw
    const big = await change(0, 512, 512, 2);
    expect(big.rects.length).toBeGreaterThan(0);
    expect(big.rects.every((r) => r.codec === Codec.Jpeg)).toBe(true);
    // not refreshed while it might still be moving (on a desktop short of CPU a starting
    // animation's updates came 150 ms and more apart)...
    const sent = frames.length;
    clock.advance(200);
    timers.fireAll();
    await settle();
    expect(frames.length).toBe(sent);
    // ...and exact once it has been still for SETTLED_MS
    clock.advance(150);
    timers.fireAll();
    await settle();
    const refresh = frames.at(-1)!;
    expect(frames.length).toBe(sent + 1);
    expect(refresh.rects.map((r) => r.codec)).not.toContain(Codec.Jpeg);
    expect(refresh.flags & FrameFlags.Lossless).toBeTruthy();
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

  it('a viewer closed while its frame encodes (the page went away) sends nothing and reports no error', async () => {
    const { stream, viewer, frames, errors, settle } = setup(256, 256, 2);
    stream.updateEnd();
    await settle();
    // text-like pixels: one palette rect whose zlib segment is too large for the calling thread
    const px = Buffer.alloc(256 * 256 * 4);
    for (let i = 0; i < 256 * 256; i++) px.set([Math.imul(i, 2654435761) >>> 30, 9, 9, 0], i * 4);
    stream.putPixels(0, 0, 256, 256, px);
    const before = frames.length;
    stream.updateEnd();
    expect(viewer.encoding).toBe(true);
    for (let i = 0; i < 3; i++) await Promise.resolve();
    viewer.close();
    await settle();
    await new Promise((r) => setTimeout(r, 20));
    expect(frames).toHaveLength(before);
    expect(errors).toEqual([]);
  });
});
