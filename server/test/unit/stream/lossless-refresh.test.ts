/**
 * Exact after motion, every time (issue 10): once a region stops changing, the client's
 * canvas equals the mirror within a second, whatever the viewer was doing when it stopped.
 * A tiny client draws every frame (JPEG included), so "exact" is checked pixel by pixel.
 */
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { Codec, decodeFrame, type Frame } from '@vdi/shared';
import { ManualClock } from '../../../src/clock.js';
import { DesktopStream } from '../../../src/stream/desktop-stream.js';
import { ManualTimers } from './helpers/manual-timers.js';
import { CanvasReplay } from './helpers/canvas-replay.js';

const log = pino({ level: 'silent' });
/** fake ms per animation frame (30 fps) */
const FRAME_MS = 33;

function setup(w: number, h: number, maxInFlight = 2) {
  const clock = new ManualClock();
  const stream = new DesktopStream('d1', clock, log, {
    cursor: () => undefined,
    clipboard: () => undefined,
  });
  stream.resize(w, h);
  stream.idle();
  const frames: Frame[] = [];
  const timers = new ManualTimers();
  const viewer = stream.attach({
    send: (b) => frames.push(decodeFrame(b)),
    maxInFlight,
    onError: (e) => {
      throw e;
    },
    setTimer: timers.schedule,
  });
  const replay = new CanvasReplay(w, h);
  let jpegs = 0;
  const settle = async () => {
    while (viewer.encoding) await new Promise((r) => setTimeout(r, 1));
  };
  /** the browser draws and acknowledges every frame sent so far */
  const drawAll = async () => {
    await settle();
    for (const f of frames.splice(0)) {
      jpegs += f.rects.filter((r) => r.codec === Codec.Jpeg).length;
      await replay.draw(f);
      viewer.ack(f.seq);
    }
    await settle();
  };
  /** photo-like pixels: every pixel different, many colours */
  const noise = (pw: number, ph: number, seed: number) => {
    const px = Buffer.alloc(pw * ph * 4);
    for (let i = 0; i < px.length; i++) px[i] = Math.imul(i + seed * 7919, 2654435761) >>> 24;
    return px;
  };
  /** time passes: the refresh timer fires every `step` ms, the browser keeps up */
  const idleFor = async (ms: number, step = 50) => {
    for (let t = 0; t < ms; t += step) {
      clock.advance(step);
      timers.fireAll();
      await drawAll();
    }
  };
  return {
    clock,
    stream,
    viewer,
    frames,
    replay,
    drawAll,
    noise,
    idleFor,
    jpegs: () => jpegs,
    settle,
  };
}

describe('lossless refresh after motion', () => {
  it('a long animation is exact within 1 s of stopping (its heat has not decayed by then)', async () => {
    const { clock, stream, replay, drawAll, noise, idleFor, jpegs } = setup(192, 160);
    stream.updateEnd();
    await drawAll();
    for (let i = 0; i < 60; i++) {
      clock.advance(FRAME_MS);
      stream.putPixels(32, 16, 128, 128, noise(128, 128, i));
      stream.updateEnd();
      await drawAll();
    }
    expect(jpegs()).toBeGreaterThan(0);
    expect(replay.differing(stream.fb)).toBeGreaterThan(0); // lossy now
    await idleFor(1000);
    expect(replay.differing(stream.fb)).toBe(0);
  });

  it('a lossy region next to something that keeps changing (a clock) is still refreshed', async () => {
    const { clock, stream, replay, drawAll, noise, idleFor, jpegs } = setup(192, 160);
    stream.updateEnd();
    await drawAll();
    const tick = (i: number) => {
      const px = Buffer.alloc(16 * 16 * 4, (i * 37) & 255);
      stream.putPixels(128, 0, 16, 16, px);
    };
    for (let i = 0; i < 30; i++) {
      clock.advance(FRAME_MS);
      stream.putPixels(0, 0, 128, 128, noise(128, 128, i));
      tick(i);
      stream.updateEnd();
      await drawAll();
    }
    expect(jpegs()).toBeGreaterThan(0);
    // the animation stops, the clock goes on every 20 ms
    for (let i = 0; i < 50; i++) {
      clock.advance(20);
      tick(100 + i);
      stream.updateEnd();
      await idleFor(0);
      if (i % 3 === 0) await idleFor(1, 1); // the refresh timer fires now and then
    }
    expect(replay.differing(stream.fb, { x: 0, y: 0, w: 128, h: 128 })).toBe(0);
  });

  it('content copied away while its lossy frame is still encoding is refreshed where it lands', async () => {
    const { clock, stream, replay, drawAll, noise, idleFor, settle, viewer } = setup(256, 160, 4);
    stream.updateEnd();
    await drawAll();
    for (let i = 0; i < 10; i++) {
      clock.advance(FRAME_MS);
      stream.putPixels(0, 0, 128, 128, noise(128, 128, i));
      stream.updateEnd();
      await drawAll();
    }
    // the left half turns to two colours for one frame (lossless: its lossy cells are clean)
    clock.advance(FRAME_MS);
    const two = Buffer.alloc(64 * 128 * 4);
    for (let i = 0; i < 64 * 128; i++) two.set(i % 3 ? [250, 250, 250] : [0, 0, 90], i * 4);
    stream.putPixels(0, 0, 64, 128, two);
    stream.updateEnd();
    await drawAll();
    // then photo-like again: this lossy frame is still encoding when the window moves right
    clock.advance(FRAME_MS);
    stream.putPixels(0, 0, 64, 128, noise(64, 128, 42));
    stream.updateEnd();
    expect(viewer.encoding).toBe(true);
    stream.copyRect(0, 0, 160, 0, 64, 128);
    stream.updateEnd();
    await settle();
    await drawAll();
    await idleFor(1000);
    expect(replay.differing(stream.fb)).toBe(0);
  });

  it('a viewer behind when the motion stops gets the exact picture, not another lossy one', async () => {
    const { clock, stream, replay, drawAll, noise, frames, viewer, settle } = setup(192, 160, 1);
    stream.updateEnd();
    await drawAll();
    for (let i = 0; i < 30; i++) {
      clock.advance(FRAME_MS);
      stream.putPixels(0, 0, 128, 128, noise(128, 128, i));
      stream.updateEnd();
      await drawAll();
    }
    // the last frame of the animation arrives while one frame is in flight and stays unacked
    clock.advance(FRAME_MS);
    stream.putPixels(0, 0, 128, 128, noise(128, 128, 99));
    stream.updateEnd();
    await settle();
    clock.advance(FRAME_MS);
    stream.putPixels(0, 0, 128, 128, noise(128, 128, 100));
    stream.updateEnd();
    await settle();
    expect(frames).toHaveLength(1);
    clock.advance(400); // the browser was slow; the screen has been still since
    await drawAll(); // the ack lets the pending damage go: quiet by now, so lossless
    expect(frames).toHaveLength(1);
    expect(frames[0]!.rects.some((r) => r.codec === Codec.Jpeg)).toBe(false);
    await drawAll();
    expect(replay.differing(stream.fb)).toBe(0);
    expect(viewer.stats.inFlight).toBe(0);
  });
});

describe('lossless refresh comes to rest', () => {
  it('after motion with moves, frames stop once the canvas is exact', async () => {
    const { clock, stream, replay, drawAll, noise, idleFor, frames, viewer } = setup(320, 200, 2);
    stream.updateEnd();
    await drawAll();
    // a window with photo-like content animates and is dragged to the right, 4 px a step
    for (let i = 0; i < 40; i++) {
      clock.advance(16);
      stream.copyRect(i * 4, 20, i * 4 + 4, 20, 96, 96);
      stream.putPixels(i * 4 + 4, 20, 96, 96, noise(96, 96, i));
      stream.updateEnd();
      if (i % 2) await drawAll();
    }
    await drawAll();
    await idleFor(1000);
    expect(replay.differing(stream.fb)).toBe(0);
    // from now on nothing changes: nothing more is sent
    const before = viewer.stats.frames;
    for (let i = 0; i < 20; i++) {
      clock.advance(150);
      await idleFor(0);
      await idleFor(1, 1);
    }
    expect(viewer.stats.frames).toBe(before);
    expect(frames).toHaveLength(0);
    expect(viewer.stats.inFlight).toBe(0);
  });
});

describe('lossless refresh sends only what was lossy', () => {
  it('dragging a window of text (lossless while hot) costs no refresh afterwards', async () => {
    const { clock, stream, drawAll, idleFor, viewer, replay } = setup(320, 200, 2);
    // a "window" of two-colour text at (8, 8)
    const text = Buffer.alloc(96 * 96 * 4);
    for (let i = 0; i < 96 * 96; i++) text.set(i % 7 ? [250, 250, 250] : [0, 0, 0], i * 4);
    stream.putPixels(8, 8, 96, 96, text);
    stream.updateEnd();
    await drawAll();
    for (let i = 0; i < 40; i++) {
      clock.advance(16);
      // the text changes in place (hot, but few colours: lossless) ...
      stream.putPixels(8 + i * 4, 8, 96, 96, text);
      stream.updateEnd();
      // ... and moves while that frame encodes
      stream.copyRect(8 + i * 4, 8, 12 + i * 4, 8, 96, 96);
      stream.updateEnd();
      if (i % 2) await drawAll();
    }
    await drawAll();
    const framesAtStop = viewer.stats.frames;
    await idleFor(1000);
    expect(replay.differing(stream.fb)).toBe(0);
    expect(viewer.stats.frames).toBe(framesAtStop);
  });
});
