/**
 * The mirror's resizes: a burst of size changes costs one reallocation, and a server that
 * forces one reallocation after another (a size, a pixel, another size…) is cut off.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import { RfbProtocolError } from '../../../src/rfb/errors.js';
import { RAW_BAND_BYTES } from '../../../src/rfb/decoders/raw.js';
import { DesktopStream } from '../../../src/stream/desktop-stream.js';
import { makeParser } from '../rfb/helpers/run-parser.js';
import { raw, splitAt, update } from '../rfb/helpers/server-wire.js';
import { FramebufferModel } from '../rfb/helpers/sinks.js';

function setup() {
  const clock = new ManualClock();
  const stream = new DesktopStream('d1', clock, pino({ level: 'silent' }), {
    cursor: () => undefined,
    clipboard: () => undefined,
  });
  stream.resize(640, 480);
  stream.idle();
  const frames: Uint8Array[] = [];
  const viewer = stream.attach({
    send: (f) => frames.push(f),
    maxInFlight: 2,
    onError: () => undefined,
  });
  return { clock, stream, viewer, frames };
}

const pixel = Buffer.alloc(4, 0x80);

describe('DesktopStream resizes', () => {
  it('applies 200 resizes in a row as one reallocation, when the parser idles', () => {
    const { stream, viewer } = setup();
    const before = stream.reallocations;
    const started = performance.now();
    for (let i = 0; i < 200; i++) {
      stream.resize(i % 2 ? 2048 : 2047, 2048);
      stream.updateEnd();
    }
    stream.idle();
    const ms = performance.now() - started;
    expect(stream.reallocations - before).toBe(1);
    expect([stream.width, stream.height]).toEqual([2048, 2048]); // the last one
    expect(stream.fb.length).toBe(2048 * 2048 * 4);
    expect(viewer.dirty.width).toBe(2048);
    expect(ms).toBeLessThan(500);
  });

  it('applies a pending size before pixels for it are written', () => {
    const { stream } = setup();
    stream.resize(800, 600);
    expect(stream.width).toBe(640); // not yet
    stream.putPixels(799, 599, 1, 1, pixel);
    expect([stream.width, stream.height]).toEqual([800, 600]);
    expect(stream.fb.readUInt32LE((599 * 800 + 799) * 4)).toBe(0x80808080);
  });

  it('keeps what overlaps across a resize', () => {
    const { stream } = setup();
    stream.putPixels(10, 10, 1, 1, pixel);
    stream.resize(100, 100);
    stream.idle();
    expect(stream.fb.readUInt32LE((10 * 100 + 10) * 4)).toBe(0x80808080);
  });

  it('cuts off a server that forces a reallocation per pixel', () => {
    const { stream } = setup();
    let applied = 0;
    const churn = () => {
      for (let i = 0; i < 200; i++) {
        stream.resize(i % 2 ? 2048 : 2047, 1024);
        stream.putPixels(0, 0, 1, 1, pixel);
        applied++;
      }
    };
    expect(churn).toThrow(RfbProtocolError);
    expect(applied).toBeLessThanOrEqual(20);
    expect(stream.reallocations).toBeLessThanOrEqual(21);
    // a desktop that resizes now and then is fine
    const { stream: calm, clock: calmClock } = setup();
    for (let i = 0; i < 50; i++) {
      calmClock.advance(1000);
      calm.resize(i % 2 ? 1024 : 1000, 768);
      calm.putPixels(0, 0, 1, 1, pixel);
    }
    expect(calm.width).toBe(1024);
  });
});

describe('DesktopStream viewers and input', () => {
  it('a detached viewer is no longer fed damage', () => {
    const { stream, viewer } = setup();
    expect([...stream.viewers]).toEqual([viewer]);
    stream.detach(viewer);
    expect(stream.viewers.size).toBe(0);
    viewer.dirty.clear();
    stream.putPixels(0, 0, 1, 1, pixel);
    expect(viewer.dirty.empty).toBe(true);
  });

  it('routes each kind of input to the link and says whether it was sent', () => {
    const { stream } = setup();
    expect(stream.input({ kind: 'key', keysym: 0x61, down: true })).toBe(false); // no link yet
    const calls: unknown[][] = [];
    let reading = true;
    const record =
      (name: string) =>
      (...args: unknown[]) => {
        calls.push([name, ...args]);
        return reading;
      };
    stream.connected({
      keyEvent: record('key'),
      pointerEvent: record('pointer'),
      clientCutText: record('clipboard'),
      setDesktopSize: record('resize'),
      canResize: true,
    });
    expect(stream.input({ kind: 'key', keysym: 0x61, down: true })).toBe(true);
    expect(stream.input({ kind: 'pointer', x: 3, y: 4, buttons: 1 })).toBe(true);
    expect(stream.input({ kind: 'clipboard', text: 'hi' })).toBe(true);
    expect(stream.input({ kind: 'resize', width: 800, height: 600 })).toBe(true);
    expect(calls).toEqual([
      ['key', 0x61, true],
      ['pointer', 3, 4, 1],
      ['clipboard', 'hi'],
      ['resize', 800, 600],
    ]);
    reading = false; // the desktop stopped reading
    expect(stream.input({ kind: 'key', keysym: 0x61, down: false })).toBe(false);
  });
});

describe('DesktopStream: Raw pixels', () => {
  /** one update: full-width bands (one copy per band) and narrow rects (one per row) */
  function rawUpdate(width: number): Buffer {
    const pixels = (n: number, seed: number) =>
      Buffer.from(Array.from({ length: n * 4 }, (_, i) => (i * 31 + seed * 17) & 0xff));
    return update([
      raw(0, 0, width, 70, pixels(width * 70, 1)),
      raw(3, 80, 17, 40, pixels(17 * 40, 2)),
      raw(width - 1, 0, 1, 120, pixels(120, 3)),
      raw(0, 119, width, 1, pixels(width, 4)),
    ]);
  }

  it('go from the received chunks into the mirror as the pixels the server sent', () => {
    const width = 300;
    const height = 120;
    const message = rawUpdate(width);
    const expected = new FramebufferModel();
    expected.resize(width, height);
    makeParser(width, height, undefined, expected).parser.push(message);
    for (const cuts of [[], [1, 2, 3], [17, 4096, 70_000, 70_001], [message.length - 1]]) {
      const { stream } = setup();
      stream.resize(width, height);
      stream.idle();
      let tookRows = 0;
      const putRows = stream.putRows.bind(stream);
      stream.putRows = (x, y, w, h, rows) => {
        tookRows++;
        putRows(x, y, w, h, rows);
      };
      const { parser } = makeParser(width, height, undefined, stream);
      for (const chunk of splitAt(message, cuts)) parser.push(chunk);
      expect(tookRows).toBeGreaterThan(0); // the band-free path, not putPixels
      expect(stream.fb.equals(expected.data)).toBe(true);
    }
  });
  it('heat a cell once per update, however many bands of its rows arrive', () => {
    // 4 rows of this width make one Raw band: 4 bands per 16-row cell
    const width = RAW_BAND_BYTES / 4 / 4;
    const { stream, clock } = setup();
    stream.resize(width, 64);
    stream.idle();
    const { parser } = makeParser(width, 64, undefined, stream);
    const area = { x: 0, y: 0, w: width, h: 64 };
    // updates 100 ms apart: with a half-life of 500 ms the rate of changes reaches 3/s
    // ("hot") at the 4th update; counted per band, the first would already be hot
    for (let n = 1; n <= 6; n++) {
      parser.push(update([raw(0, 0, width, 64, Buffer.alloc(width * 64 * 4, n))]));
      expect(stream.fb[0]).toBe(n);
      expect(stream.isHot(area), `after ${n} updates`).toBe(n >= 4);
      clock.advance(100);
    }
  });
});
