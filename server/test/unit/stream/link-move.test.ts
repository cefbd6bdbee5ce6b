/**
 * The stream's half of a live migration (decision 12): input held while the VM may be
 * paused and replayed in order, paced, and bounded; the destination's framebuffer drawn
 * aside (StagingSink) and taken over sending viewers only the squares that differ.
 */
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { decodeFrame, type Frame } from '@vdi/shared';
import { ManualClock } from '../../../src/clock.js';
import { DesktopStream, type RfbLink } from '../../../src/stream/desktop-stream.js';
import { StagingSink } from '../../../src/stream/staging.js';
import { ManualTimers } from './helpers/manual-timers.js';
import { CanvasReplay } from './helpers/canvas-replay.js';

const log = pino({ level: 'silent' });

function fakeLink() {
  const sent: string[] = [];
  const link: RfbLink = {
    keyEvent: (k, down) => sent.push(`key ${k} ${down ? 'down' : 'up'}`) > 0,
    pointerEvent: (x, y, b) => sent.push(`pointer ${x},${y} ${b}`) > 0,
    clientCutText: (t) => sent.push(`clip ${t}`) > 0,
    setDesktopSize: () => false,
    canResize: false,
  };
  return { link, sent };
}

function setup(w = 64, h = 32) {
  const stream = new DesktopStream('d1', new ManualClock(), log, {
    cursor: () => undefined,
    clipboard: () => undefined,
  });
  stream.resize(w, h);
  stream.idle();
  return stream;
}

describe('input during a move', () => {
  it('is held, then replayed in order to the new link, one key per pace step', () => {
    const stream = setup();
    const src = fakeLink();
    stream.connected(src.link);
    expect(stream.input({ kind: 'key', keysym: 97, down: true })).toBe(true);
    stream.holdInput();
    expect(stream.input({ kind: 'key', keysym: 97, down: false })).toBe(true);
    stream.input({ kind: 'pointer', x: 1, y: 1, buttons: 0 });
    stream.input({ kind: 'pointer', x: 5, y: 5, buttons: 0 }); // coalesced with the one before
    stream.input({ kind: 'key', keysym: 98, down: true });
    stream.input({ kind: 'key', keysym: 98, down: false });
    expect(src.sent).toEqual(['key 97 down']);

    const dest = fakeLink();
    stream.connected(dest.link);
    const timers = new ManualTimers();
    expect(stream.releaseInput(timers.schedule)).toBe(4);
    // the first key goes at once, the rest one per timer
    expect(dest.sent).toEqual(['key 97 up']);
    // input arriving while the held keys drain queues behind them
    stream.input({ kind: 'key', keysym: 99, down: true });
    timers.fireAll();
    expect(dest.sent).toEqual(['key 97 up', 'pointer 5,5 0', 'key 98 down']);
    timers.fireAll();
    timers.fireAll();
    timers.fireAll();
    expect(dest.sent).toEqual([
      'key 97 up',
      'pointer 5,5 0',
      'key 98 down',
      'key 98 up',
      'key 99 down',
    ]);
    expect(timers.count).toBe(0);
    // no longer held: straight through
    stream.input({ kind: 'key', keysym: 99, down: false });
    expect(dest.sent.at(-1)).toBe('key 99 up');
    expect(src.sent).toEqual(['key 97 down']);
  });

  it('is bounded in bytes: past the bound an event is refused, not queued', () => {
    const stream = setup();
    stream.connected(fakeLink().link);
    stream.holdInput();
    const big = 'x'.repeat(200 * 1024);
    expect(stream.input({ kind: 'clipboard', text: big })).toBe(true);
    expect(stream.input({ kind: 'clipboard', text: big })).toBe(false);
    expect(stream.input({ kind: 'key', keysym: 97, down: true })).toBe(true);
  });
});

describe('taking over the destination framebuffer', () => {
  it('sends viewers only the squares that differ from what they have', async () => {
    const stream = setup(64, 32);
    const frames: Frame[] = [];
    const viewer = stream.attach({
      send: (b) => frames.push(decodeFrame(b)),
      maxInFlight: 8,
      onError: (e) => {
        throw e;
      },
      setTimer: new ManualTimers().schedule,
    });
    const red = Buffer.alloc(64 * 32 * 4);
    for (let i = 0; i < 64 * 32; i++) red.set([200, 0, 0, 0], i * 4);
    stream.putPixels(0, 0, 64, 32, red);
    stream.updateEnd();
    const settle = async () => {
      while (viewer.encoding) await new Promise((r) => setTimeout(r, 1));
    };
    await settle();
    for (const f of frames) viewer.ack(f.seq);
    frames.length = 0;

    // the destination draws aside: the same screen but one pixel in the square at (32,16)
    const staging = new StagingSink();
    staging.resize(64, 32);
    staging.putPixels(0, 0, 64, 32, red);
    staging.putPixels(40, 20, 1, 1, Buffer.from([0, 200, 0, 0]));
    staging.updateEnd();
    expect(stream.fb.equals(red)).toBe(true); // nothing of it reached the mirror

    expect(stream.adoptFramebuffer(staging.fb, staging.width, staging.height)).toBe(16 * 16);
    expect(stream.fb.equals(staging.fb)).toBe(true);
    await settle();
    expect(frames).toHaveLength(1);
    const rects = frames[0]!.rects;
    expect(rects.every((r) => r.x >= 32 && r.y >= 16 && r.x + r.w <= 48 && r.y + r.h <= 32)).toBe(
      true,
    );

    // from now on the link's drawing goes straight to the stream
    staging.forwardTo(stream);
    staging.putPixels(0, 0, 1, 1, Buffer.from([1, 2, 3, 0]));
    expect([...stream.fb.subarray(0, 3)]).toEqual([1, 2, 3]);
  });
});

describe('a frame while an update is under way (moves found at its end)', () => {
  it('waits for the end: a copy planned then never moves pixels the viewer already has', async () => {
    const w = 64;
    const h = 64;
    const stream = setup(w, h);
    stream.detectMoves(true); // as for QEMU, which sends no CopyRect
    const frames: Frame[] = [];
    const viewer = stream.attach({
      send: (b) => frames.push(decodeFrame(b)),
      maxInFlight: 8,
      onError: (e) => {
        throw e;
      },
      setTimer: new ManualTimers().schedule,
    });
    const replay = new CanvasReplay(w, h);
    const drawAll = async () => {
      while (viewer.encoding) await new Promise((r) => setTimeout(r, 1));
      for (const f of frames.splice(0)) {
        await replay.draw(f);
        viewer.ack(f.seq);
      }
      while (viewer.encoding) await new Promise((r) => setTimeout(r, 1));
    };
    // rows of distinct flat colours (lossless), like lines of a console
    const row = (n: number) => [(n * 37) & 0xff, (n * 91) & 0xff, (n * 13 + 50) & 0xff, 0];
    const rows = (first: number, count: number, line: (y: number) => number) => {
      const px = Buffer.alloc(w * count * 4);
      for (let y = 0; y < count; y++)
        for (let x = 0; x < w; x++) px.set(row(line(first + y)), (y * w + x) * 4);
      return px;
    };
    stream.putPixels(
      0,
      0,
      w,
      h,
      rows(0, h, (y) => y),
    );
    stream.updateEnd();
    await drawAll();
    expect(replay.canvas.equals(stream.fb)).toBe(true);

    // the screen scrolls up 16 rows; the update arrives in two reads, and between them the
    // viewer wants a frame (a keyframe: after a resize, or asked for by the browser)
    const scrolled = (y: number) => (y + 16 < h ? y + 16 : 1000 + y);
    stream.putPixels(0, 0, w, 32, rows(0, 32, scrolled));
    viewer.requestKeyframe();
    await drawAll();
    stream.putPixels(0, 32, w, 32, rows(32, 32, scrolled));
    stream.updateEnd();
    await drawAll();

    expect(stream.fb.equals(rows(0, h, scrolled))).toBe(true);
    let wrong = 0;
    for (let i = 0; i < w * h; i++)
      if (replay.canvas.readUIntLE(i * 4, 3) !== stream.fb.readUIntLE(i * 4, 3)) wrong++;
    expect(wrong).toBe(0);
  });
});
