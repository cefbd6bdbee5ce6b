import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { Codec, FrameFlags, decodeFrame, readVideoPayload, type Frame } from '@vdi/shared';
import { ManualClock } from '../../../src/clock.js';
import { DesktopStream } from '../../../src/stream/desktop-stream.js';
import type {
  EncoderEvents,
  EncoderSpec,
  VideoEncoder,
} from '../../../src/stream/video/encoder.js';
import {
  VIDEO_CHECK_MS,
  VIDEO_EXIT_QUIET_MS,
  VIDEO_LEVEL_HOLD_MS,
} from '../../../src/stream/video/video-mode.js';
import { findVideoRegion } from '../../../src/stream/video/region-finder.js';
import { ManualTimers } from './helpers/manual-timers.js';

const log = pino({ level: 'silent' });

/** An encoder the test answers by hand: it records pictures and returns chunks when told. */
class FakeEncoder implements VideoEncoder {
  pictures: Buffer[] = [];
  returned = 0;
  closed = false;
  constructor(
    readonly spec: EncoderSpec,
    private readonly events: EncoderEvents,
  ) {}
  get pending(): number {
    return this.pictures.length - this.returned;
  }
  encode(rgbx: Buffer): boolean {
    if (this.closed || this.pending >= 2) return false;
    this.pictures.push(rgbx);
    return true;
  }
  /** the encoder returns its oldest picture */
  answer(): void {
    const key = this.returned === 0;
    this.returned++;
    this.events.chunk({
      key,
      codec: 'avc1.42C01E',
      data: Buffer.of(0, 0, 0, 1, key ? 0x65 : 0x41),
    });
  }
  fail(): void {
    this.events.failed(new Error('boom'));
  }
  close(): void {
    this.closed = true;
  }
}

/** the animated region: cell-aligned, 320×240 */
const R = { x: 160, y: 96, w: 320, h: 240 };

function setup(codecs: 'avc1'[] = ['avc1']) {
  const clock = new ManualClock();
  const stream = new DesktopStream('d1', clock, log, {
    cursor: () => undefined,
    clipboard: () => undefined,
  });
  stream.resize(640, 480);
  stream.idle();
  const frames: Frame[] = [];
  const timers = new ManualTimers();
  const encoders: FakeEncoder[] = [];
  const viewer = stream.attach({
    send: (b) => frames.push(decodeFrame(b)),
    maxInFlight: 2,
    onError: (e) => {
      throw e;
    },
    setTimer: timers.schedule,
    video: {
      codecs,
      log,
      start: (spec, events) => {
        const e = new FakeEncoder(spec, events);
        encoders.push(e);
        return e;
      },
    },
  });
  const settle = async () => {
    // encodes run on the libuv pool: wait until the viewer has sent what it can
    for (let i = 0; i < 3; i++) {
      while (viewer.encoding) await new Promise((r) => setTimeout(r, 1));
      await new Promise((r) => setImmediate(r));
    }
  };
  const ackAll = () => {
    const last = frames.at(-1);
    if (last) viewer.ack(last.seq);
  };
  let tick = 0;
  /**
   * one animation step of the region: the clock moves 33 ms, the region changes; `few`:
   * four colours (text or flat drawing in motion) instead of photo-like pixels
   */
  const animate = async (few = false) => {
    clock.advance(33);
    tick++;
    const px = Buffer.alloc(R.w * R.h * 4);
    for (let i = 0; i < R.w * R.h; i++)
      if (few) px.set([((i + tick) & 3) * 80, 40, 200, 0], i * 4);
      else px.set([(i + tick * 7) & 255, (i >> 8) & 255, tick & 255, 0], i * 4);
    stream.putPixels(R.x, R.y, R.w, R.h, px);
    stream.updateEnd();
    await settle();
    ackAll();
    await settle();
  };
  return { clock, stream, viewer, frames, timers, encoders, settle, animate, ackAll };
}

const videoRects = (f: Frame) => f.rects.filter((r) => r.codec === Codec.Video);
const inside = (r: { x: number; y: number; w: number; h: number }) =>
  r.x >= R.x && r.y >= R.y && r.x + r.w <= R.x + R.w && r.y + r.h <= R.y + R.h;

describe('video mode', () => {
  it('switches a region that keeps changing to video, and back to lossless when it stops', async () => {
    const { viewer, frames, timers, encoders, settle, animate, clock } = setup();
    await settle();
    // half a second of motion before the region goes video
    for (let i = 0; i < 10; i++) await animate();
    expect(encoders).toHaveLength(0);
    for (let i = 0; i < 12 && encoders.length === 0; i++) await animate();
    expect(encoders).toHaveLength(1);
    const enc = encoders[0]!;
    expect(enc.spec).toMatchObject({ width: R.w, height: R.h });
    expect(viewer.video!.region).toEqual(R);
    // until the encoder is warm, the region still goes the normal way
    await animate();
    expect(frames.at(-1)!.rects.some((r) => r.codec !== Codec.Video && inside(r))).toBe(true);
    // two pictures in the encoder at most: more motion does not push a third
    expect(enc.pictures).toHaveLength(2);
    await animate();
    expect(enc.pictures).toHaveLength(2);
    enc.answer();
    await settle();
    const first = frames.at(-1)!;
    const [v] = videoRects(first);
    expect(v).toMatchObject(R);
    expect(readVideoPayload(v!.payload)).toMatchObject({
      key: true,
      codec: 'avc1.42C01E',
      regionId: 0,
    });
    expect(first.flags & FrameFlags.Lossless).toBe(0);
    viewer.ack(first.seq);
    // warm: the region's damage goes to the encoder only
    for (let i = 0; i < 5; i++) {
      await animate();
      expect(enc.pending).toBeLessThanOrEqual(2);
      while (enc.pending > 0) enc.answer();
      await settle();
      viewer.ack(frames.at(-1)!.seq);
    }
    const lastVideo = frames.filter((f) => videoRects(f).length > 0);
    expect(lastVideo.length).toBeGreaterThanOrEqual(5);
    for (const f of frames.slice(frames.indexOf(first)))
      expect(f.rects.filter((r) => r.codec !== Codec.Video && inside(r))).toEqual([]);
    expect(readVideoPayload(videoRects(lastVideo.at(-1)!)[0]!.payload).key).toBe(false);

    // the motion stops: after VIDEO_EXIT_QUIET_MS the region ends and is sent losslessly
    const before = frames.length;
    for (let t = 0; t < VIDEO_EXIT_QUIET_MS + VIDEO_CHECK_MS; t += VIDEO_CHECK_MS) {
      clock.advance(VIDEO_CHECK_MS);
      timers.fireAll();
      await settle();
    }
    expect(enc.closed).toBe(true);
    expect(viewer.video!.region).toBeUndefined();
    const refresh = frames.slice(before);
    expect(refresh.length).toBeGreaterThan(0);
    const covered = refresh
      .flatMap((f) => f.rects)
      .filter((r) => r.codec !== Codec.Jpeg && r.codec !== Codec.Video)
      .reduce(
        (a, r) =>
          a +
          Math.max(0, Math.min(r.x + r.w, R.x + R.w) - Math.max(r.x, R.x)) *
            Math.max(0, Math.min(r.y + r.h, R.y + R.h) - Math.max(r.y, R.y)),
        0,
      );
    expect(covered).toBeGreaterThanOrEqual(R.w * R.h);
    expect(refresh.at(-1)!.flags & FrameFlags.Lossless).toBe(FrameFlags.Lossless);
    // and a still screen does not flap back into video while its cells cool down
    for (let t = 0; t < 2000; t += VIDEO_CHECK_MS) {
      clock.advance(VIDEO_CHECK_MS);
      viewer.flush();
      timers.fireAll();
    }
    expect(encoders).toHaveLength(1);
  });

  it('holds a new encoder back until a picture comes out fresh: the browser never goes back in time', async () => {
    const { viewer, frames, encoders, settle, animate } = setup();
    await settle();
    for (let i = 0; i < 25 && encoders.length === 0; i++) await animate();
    const enc = encoders[0]!;
    // ffmpeg starts slowly: the region goes on as images for 200 ms, two pictures waiting
    for (let i = 0; i < 6; i++) await animate();
    expect(enc.pictures).toHaveLength(2);
    // out they come, of the region 200 ms ago, older than the images painted since: held
    enc.answer();
    enc.answer();
    await settle();
    expect(frames.flatMap(videoRects)).toEqual([]);
    await animate();
    expect(frames.at(-1)!.rects.some((r) => r.codec !== Codec.Video && inside(r))).toBe(true);
    // the encoder is fed the newest pixels meanwhile; that picture comes out fresh
    expect(enc.pictures).toHaveLength(3);
    enc.answer();
    await settle();
    const first = frames.at(-1)!;
    // all three in one frame, the key first: the browser decodes them and paints the last
    expect(videoRects(first).map((v) => readVideoPayload(v.payload).key)).toEqual([
      true,
      false,
      false,
    ]);
    viewer.ack(first.seq);
    // and from here the region is video's
    await animate();
    while (enc.pending > 0) enc.answer();
    await settle();
    for (const f of frames.slice(frames.indexOf(first)))
      expect(f.rects.filter((r) => r.codec !== Codec.Video && inside(r))).toEqual([]);
  });

  it('leaves text and flat drawing in motion to lossless images (a terminal scrolling)', async () => {
    const { viewer, frames, encoders, settle, animate } = setup();
    await settle();
    const before = frames.length;
    // three times as long as photo-like motion needs to go video
    for (let i = 0; i < 66; i++) await animate(true);
    expect(encoders).toHaveLength(0);
    expect(viewer.video!.region).toBeUndefined();
    const rects = frames.slice(before).flatMap((f) => f.rects);
    expect(rects.filter(inside).length).toBeGreaterThan(0);
    for (const r of rects) expect(r.codec).not.toBe(Codec.Video);
    expect(frames.at(-1)!.flags & FrameFlags.Lossless).toBe(FrameFlags.Lossless);
    // the same region turning photo-like goes video as before
    for (let i = 0; i < 25 && encoders.length === 0; i++) await animate();
    expect(encoders).toHaveLength(1);
  });

  it('falls back to images for good when the browser cannot decode, repainting the region', async () => {
    const { viewer, frames, encoders, settle, animate } = setup();
    await settle();
    for (let i = 0; i < 25 && encoders.length === 0; i++) await animate();
    encoders[0]!.answer();
    await settle();
    viewer.ack(frames.at(-1)!.seq);
    const before = frames.length;
    viewer.videoFailed(0, 'EncodingError: Decoding error.');
    await settle();
    expect(encoders[0]!.closed).toBe(true);
    expect(viewer.video!.off).toMatch(/decoder/);
    const repaint = frames.slice(before).flatMap((f) => f.rects);
    expect(repaint.some((r) => inside(r) || (r.x <= R.x && r.x + r.w >= R.x + R.w))).toBe(true);
    for (let i = 0; i < 40; i++) await animate();
    expect(encoders).toHaveLength(1);
    expect(frames.slice(before).every((f) => videoRects(f).length === 0)).toBe(true);
  });

  it('falls back when the encoder dies, and never starts one for a browser without a codec', async () => {
    const a = setup();
    await a.settle();
    for (let i = 0; i < 25 && a.encoders.length === 0; i++) await a.animate();
    a.encoders[0]!.fail();
    expect(a.viewer.video!.off).toMatch(/encoder: boom/);
    for (let i = 0; i < 30; i++) await a.animate();
    expect(a.encoders).toHaveLength(1);

    const b = setup([]);
    await b.settle();
    for (let i = 0; i < 30; i++) await b.animate();
    expect(b.encoders).toHaveLength(0);
    expect(b.frames.every((f) => videoRects(f).length === 0)).toBe(true);
  });

  it('lowers the bit rate when the viewer lags, after the lag has held', async () => {
    const { viewer, encoders, timers, clock, settle, animate } = setup();
    await settle();
    for (let i = 0; i < 25 && encoders.length === 0; i++) await animate();
    const kbps = encoders[0]!.spec.kbps;
    viewer.stats.lagMs = 250; // acks come back a quarter second late
    for (let t = 0; t <= VIDEO_LEVEL_HOLD_MS + VIDEO_CHECK_MS; t += VIDEO_CHECK_MS) {
      clock.advance(VIDEO_CHECK_MS);
      viewer.stats.lagMs = 250;
      // keep the region moving, so it stays video
      viewer.damage(R);
      timers.fireAll();
      await settle();
      if (encoders.length > 1) break;
      await animate();
      viewer.stats.lagMs = 250;
    }
    expect(encoders.length).toBe(2);
    expect(encoders[0]!.closed).toBe(true);
    expect(encoders[1]!.spec.kbps).toBeLessThan(kbps);
  });

  it('changes the bit rate of a region on screen without repainting it as images', async () => {
    const { viewer, frames, encoders, timers, clock, settle, animate } = setup();
    await settle();
    for (let i = 0; i < 25 && encoders.length === 0; i++) await animate();
    const old = encoders[0]!;
    await animate();
    while (old.pending > 0) old.answer();
    await settle();
    viewer.ack(frames.at(-1)!.seq);
    const warmFrom = frames.length;
    // the viewer lags until a replacement at a lower rate starts
    for (let t = 0; t <= VIDEO_LEVEL_HOLD_MS + VIDEO_CHECK_MS && encoders.length < 2;) {
      clock.advance(VIDEO_CHECK_MS);
      t += VIDEO_CHECK_MS;
      viewer.stats.lagMs = 250;
      timers.fireAll();
      await animate();
      while (old.pending > 0) old.answer();
      await settle();
      viewer.ack(frames.at(-1)!.seq);
    }
    expect(encoders).toHaveLength(2);
    const next = encoders[1]!;
    expect(next.spec.kbps).toBeLessThan(old.spec.kbps);
    // while it warms up the old encoder goes on; the replacement gets one picture
    for (let i = 0; i < 4; i++) {
      viewer.stats.lagMs = 250;
      await animate();
      while (old.pending > 0) old.answer();
      await settle();
      viewer.ack(frames.at(-1)!.seq);
    }
    expect(old.closed).toBe(false);
    expect(next.pictures).toHaveLength(1);
    // its key comes out, of the region four steps ago (a loaded machine starts ffmpeg late):
    // held back, the old encoder goes on, and the replacement gets the newest pixels
    next.answer();
    await settle();
    expect(old.closed).toBe(false);
    expect(frames.flatMap(videoRects).some((v) => readVideoPayload(v.payload).regionId === 1)).toBe(
      false,
    );
    viewer.stats.lagMs = 250;
    await animate();
    while (old.pending > 0) old.answer();
    await settle();
    viewer.ack(frames.at(-1)!.seq);
    expect(next.pictures).toHaveLength(2);
    const oldPictures = old.pictures.length;
    // a fresh picture: it takes over, the held key first (a new region id), the old encoder
    // stopped, the newest pixels next
    next.answer();
    await settle();
    expect(old.closed).toBe(true);
    expect(next.pictures).toHaveLength(3);
    expect(videoRects(frames.at(-1)!).map((v) => readVideoPayload(v.payload))).toMatchObject([
      { key: true, regionId: 1 },
      { key: false, regionId: 1 },
    ]);
    viewer.ack(frames.at(-1)!.seq);
    await animate();
    expect(next.pictures.length).toBeGreaterThan(3);
    expect(old.pictures).toHaveLength(oldPictures);
    // and nothing of the region went as images the whole time
    for (const f of frames.slice(warmFrom))
      expect(f.rects.filter((r) => r.codec !== Codec.Video && inside(r))).toEqual([]);
  });

  it('keyframes end the region (the browser resets its decoders)', async () => {
    const { viewer, encoders, settle, animate } = setup();
    await settle();
    for (let i = 0; i < 25 && encoders.length === 0; i++) await animate();
    viewer.requestKeyframe();
    expect(encoders[0]!.closed).toBe(true);
    expect(viewer.video!.region).toBeUndefined();
  });
});

describe('findVideoRegion', () => {
  const grid = (cols: number, rows: number, hot: (c: number, r: number) => boolean) => {
    const cells = new Uint8Array(cols * rows);
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) cells[r * cols + c] = hot(c, r) ? 1 : 0;
    return { cols, rows, hot: cells };
  };

  it('finds the biggest dense hot area, cell-aligned with even sides', () => {
    const cells = grid(
      40,
      30,
      (c, r) => (c >= 10 && c < 30 && r >= 6 && r < 21) || (c === 1 && r === 1),
    );
    expect(findVideoRegion(cells, 640, 480)).toEqual({ x: 160, y: 96, w: 320, h: 240 });
  });

  it('clips to the framebuffer and keeps sides even', () => {
    const cells = grid(40, 30, (c, r) => c >= 20 && r >= 10);
    expect(findVideoRegion(cells, 637, 479)).toEqual({ x: 320, y: 160, w: 316, h: 318 });
  });

  it('leaves small or sparse motion to images', () => {
    expect(
      findVideoRegion(
        grid(40, 30, (c, r) => c < 4 && r < 4),
        640,
        480,
      ),
    ).toBeUndefined();
    // a diagonal line of hot cells: connected, but its box is mostly still
    expect(
      findVideoRegion(
        grid(40, 30, (c, r) => c === r),
        640,
        480,
      ),
    ).toBeUndefined();
  });
});
