import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FenceFlag } from '../../../src/rfb/constants.js';
import { RAW_BAND_BYTES } from '../../../src/rfb/decoders/raw.js';
import { RfbProtocolError } from '../../../src/rfb/errors.js';
import { DEFAULT_RFB_LIMITS } from '../../../src/rfb/types.js';
import { bytewise, makeParser, runParser } from './helpers/run-parser.js';
import * as w from './helpers/server-wire.js';
import { FramebufferModel, RecordingSink } from './helpers/sinks.js';

function expectProtocolError(err: unknown, code: string, text?: RegExp): void {
  expect(err).toBeInstanceOf(RfbProtocolError);
  expect((err as RfbProtocolError).code).toBe(code);
  if (text) expect((err as Error).message).toMatch(text);
}

/** distinct bytes so misplaced pixels show */
function pattern(n: number, seed = 0): Buffer {
  return Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));
}

describe('FramebufferUpdate', () => {
  describe('Raw', () => {
    it('passes pixels to the sink as R, G, B, X and ends the update', () => {
      const pixels = pattern(3 * 2 * 4);
      const run = runParser([w.update([w.raw(5, 6, 3, 2, pixels)])]);
      expect(run.error).toBeUndefined();
      expect(run.calls).toEqual([
        { op: 'putPixels', x: 5, y: 6, w: 3, h: 2, pixels },
        { op: 'updateEnd' },
      ]);
      expect(run.events).toEqual([{ ev: 'updateEnd', pixels: true }]);
    });

    it('writes a big rect in whole-row bands as they arrive, never holding the whole rect', () => {
      const width = 640;
      const height = 200; // 512000 bytes of pixels
      const pixels = pattern(width * height * 4, 3);
      const stream = w.update([w.raw(0, 0, width, height, pixels)]);
      const { parser, sink } = makeParser(width, height);
      const calls = (
        sink as unknown as { calls: { op: string; y?: number; h?: number; pixels?: Buffer }[] }
      ).calls;
      const bandRows = Math.floor(RAW_BAND_BYTES / (width * 4));
      const firstCut = 4 + 12 + bandRows * width * 4 + 100; // one band and a bit
      parser.push(stream.subarray(0, firstCut));
      expect(calls).toEqual([expect.objectContaining({ op: 'putPixels', y: 0, h: bandRows })]);
      expect(parser.queue.available).toBe(100); // the rest of a band waits; nothing else is held
      for (let at = firstCut; at < stream.length; at += 1000)
        parser.push(stream.subarray(at, at + 1000));
      const puts = calls.filter((c) => c.op === 'putPixels');
      expect(puts.map((c) => c.h).reduce((a, b) => (a ?? 0) + (b ?? 0), 0)).toBe(height);
      expect(Buffer.concat(puts.map((c) => c.pixels as Buffer)).equals(pixels)).toBe(true);
      expect(calls.at(-1)).toEqual({ op: 'updateEnd' });
    });

    it('skips the sink for a zero-sized rect', () => {
      const run = runParser([w.update([w.raw(64, 48, 0, 0, Buffer.alloc(0))])]);
      expect(run.error).toBeUndefined();
      expect(run.calls).toEqual([{ op: 'updateEnd' }]);
    });

    it.each([
      ['x + w past the right edge', 60, 0, 5, 1],
      ['y + h past the bottom', 0, 40, 1, 9],
      ['x beyond the width', 65, 0, 0, 0],
      ['maximal u16 values', 0xffff, 0xffff, 0xffff, 0xffff],
    ])('rejects a rectangle out of bounds: %s', (_name, x, y, rw, rh) => {
      // header only: the error must come before any pixel data is awaited
      const run = runParser([w.cat(w.u8(0), w.pad(1), w.u16(1), w.rectHeader(x, y, rw, rh, 0))]);
      expectProtocolError(run.error, 'rect-out-of-bounds', /outside the 64x48 framebuffer/);
      expect(run.calls).toEqual([]);
    });

    it('waits on a truncated rect: no error, no sink call for the incomplete band, no updateEnd', () => {
      const stream = w.update([w.raw(0, 0, 4, 4, pattern(64))]);
      const run = runParser([stream.subarray(0, stream.length - 1)]);
      expect(run.error).toBeUndefined();
      expect(run.calls).toEqual([]);
      expect(run.parser.inUpdate).toBe(true);
    });
  });

  describe('CopyRect', () => {
    it('passes source and destination to the sink', () => {
      const run = runParser([w.update([w.copyRect(10, 20, 8, 4, 0, 1)])]);
      expect(run.error).toBeUndefined();
      expect(run.calls).toEqual([
        { op: 'copyRect', srcX: 0, srcY: 1, x: 10, y: 20, w: 8, h: 4 },
        { op: 'updateEnd' },
      ]);
    });

    it('rejects a destination out of bounds', () => {
      const run = runParser([w.update([w.copyRect(60, 0, 8, 4, 0, 0)])]);
      expectProtocolError(run.error, 'rect-out-of-bounds', /CopyRect destination/);
    });

    it('rejects a source out of bounds', () => {
      const run = runParser([w.update([w.copyRect(0, 0, 8, 4, 0, 45)])]);
      expectProtocolError(
        run.error,
        'copy-source-out-of-bounds',
        /CopyRect source 8x4 at \(0,45\)/,
      );
      expect(run.calls).toEqual([]);
    });
  });

  describe('DesktopSize', () => {
    it('resizes the sink and checks later rects against the new size', () => {
      const run = runParser([
        w.update([w.desktopSize(100, 80)]),
        w.update([w.raw(90, 70, 10, 10, pattern(400))]),
      ]);
      expect(run.error).toBeUndefined();
      expect(run.calls[0]).toEqual({ op: 'resize', width: 100, height: 80 });
      expect(run.events).toContainEqual({ ev: 'resized', width: 100, height: 80 });
      expect(run.events.filter((e) => e.ev === 'updateEnd')).toEqual([
        { ev: 'updateEnd', pixels: false },
        { ev: 'updateEnd', pixels: true },
      ]);
      expect(run.parser.width).toBe(100);
    });

    it('does not call resize when the size is unchanged', () => {
      const run = runParser([w.update([w.desktopSize(64, 48)])]);
      expect(run.calls).toEqual([{ op: 'updateEnd' }]);
    });

    it.each([
      [0, 10],
      [10, 0],
    ])('rejects a %ix%i framebuffer', (fw, fh) => {
      const run = runParser([w.update([w.desktopSize(fw, fh)])]);
      expectProtocolError(run.error, 'bad-framebuffer-size');
      expect(run.calls).toEqual([]);
    });

    it.each([
      ['too wide', DEFAULT_RFB_LIMITS.maxWidth + 1, 10],
      ['too tall', 10, DEFAULT_RFB_LIMITS.maxHeight + 1],
      ['too many pixels', 8192, 8192],
      ['16384x16384', 16384, 16384],
    ])('refuses a framebuffer %s, before allocating it', (_what, fw, fh) => {
      const run = runParser([w.update([w.desktopSize(fw, fh)])]);
      expectProtocolError(run.error, 'framebuffer-too-large', new RegExp(`${fw}x${fh}`));
      expect(run.calls).toEqual([]);
    });

    it("honours the pool's smaller limits, and words the refusal for the viewer", () => {
      const run = runParser([w.update([w.desktopSize(2000, 100)])], 64, 48, {
        ...DEFAULT_RFB_LIMITS,
        maxWidth: 1920,
        maxHeight: 1080,
        maxPixels: 1920 * 1080,
      });
      expectProtocolError(
        run.error,
        'framebuffer-too-large',
        /at most 1920x1080 and 2\.1 megapixels/,
      );
      expect((run.error as RfbProtocolError).viewerMessage).toBe(
        "the desktop's screen is 2000×100 (0.2 megapixels); this pool allows at most 1920×1080 and 2.1 megapixels",
      );
    });

    it('checks the area as well as the sides', () => {
      const limits = { ...DEFAULT_RFB_LIMITS, maxPixels: 1000 };
      expect(runParser([w.update([w.desktopSize(40, 25)])], 64, 48, limits).error).toBeUndefined();
      expectProtocolError(
        runParser([w.update([w.desktopSize(40, 26)])], 64, 48, limits).error,
        'framebuffer-too-large',
      );
    });
  });

  describe('ExtendedDesktopSize', () => {
    it('reports the layout and resizes when the size changed', () => {
      const screens = [
        { id: 7, x: 0, y: 0, w: 50, h: 40 },
        { id: 9, x: 50, y: 0, w: 50, h: 40 },
      ];
      const run = runParser([w.update([w.extendedDesktopSize(0, 0, 100, 40, screens)])]);
      expect(run.error).toBeUndefined();
      expect(run.calls).toEqual([{ op: 'resize', width: 100, height: 40 }, { op: 'updateEnd' }]);
      expect(run.events).toContainEqual({
        ev: 'eds',
        reason: 'server',
        status: 'ok',
        applied: true,
        width: 100,
        height: 40,
        screens: 2,
      });
    });

    it('does not apply a refused SetDesktopSize answer, whose fields are undefined', () => {
      const run = runParser([
        w.update([w.extendedDesktopSize(1, 3, 0, 0, [{ id: 1, x: 9, y: 9, w: 999, h: 999 }])]),
      ]);
      expect(run.error).toBeUndefined();
      expect(run.calls).toEqual([{ op: 'updateEnd' }]);
      expect(run.events[0]).toMatchObject({
        ev: 'eds',
        reason: 'this-client',
        status: 'invalid-layout',
        applied: false,
      });
    });

    it.each([
      ['no screens', 0],
      ['an absurd number of screens', 200],
    ])('rejects %s', (_name, count) => {
      const run = runParser([w.update([w.extendedDesktopSize(0, 0, 64, 48, [], count)])]);
      expectProtocolError(run.error, 'bad-screen-layout', new RegExp(`lists ${count} screens`));
    });

    it('rejects a screen outside the framebuffer', () => {
      const run = runParser([
        w.update([w.extendedDesktopSize(0, 0, 64, 48, [{ id: 1, x: 32, y: 0, w: 64, h: 48 }])]),
      ]);
      expectProtocolError(run.error, 'bad-screen-layout', /screen 1/);
    });

    it('rejects an oversized framebuffer', () => {
      const run = runParser([
        w.update([w.extendedDesktopSize(0, 0, 20000, 48, [{ id: 1, x: 0, y: 0, w: 64, h: 48 }])]),
      ]);
      expectProtocolError(run.error, 'framebuffer-too-large');
    });
  });

  describe('Cursor', () => {
    it('converts pixels and bitmask to RGBA with alpha 0/255', () => {
      // 10x2: the mask row is 2 bytes (ceil(10/8)), MSB = leftmost pixel
      const pixels = pattern(10 * 2 * 4);
      const mask = Buffer.from([0b1000_0001, 0b0100_0000, 0b0000_0000, 0b1100_0000]);
      const run = runParser([w.update([w.cursor(3, 1, 10, 2, pixels, mask)])]);
      expect(run.error).toBeUndefined();
      const call = run.calls[0];
      expect(call).toMatchObject({ op: 'setCursor', hotX: 3, hotY: 1, w: 10, h: 2 });
      const rgba = (call as { rgba: Buffer }).rgba;
      const alpha = Array.from({ length: 20 }, (_, i) => rgba[i * 4 + 3]);
      expect(alpha).toEqual([255, 0, 0, 0, 0, 0, 0, 255, 0, 255, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255]);
      for (let i = 0; i < 20; i++) {
        expect([...rgba.subarray(i * 4, i * 4 + 3)]).toEqual([
          ...pixels.subarray(i * 4, i * 4 + 3),
        ]);
      }
    });

    it('reports a hidden cursor as 0x0', () => {
      const run = runParser([w.update([w.cursor(0, 0, 0, 0, Buffer.alloc(0), Buffer.alloc(0))])]);
      expect(run.calls[0]).toEqual({
        op: 'setCursor',
        hotX: 0,
        hotY: 0,
        w: 0,
        h: 0,
        rgba: Buffer.alloc(0),
      });
    });

    it('clamps a hotspot outside the cursor', () => {
      const run = runParser([
        w.update([w.cursor(40, 40, 8, 8, pattern(256), Buffer.alloc(8, 0xff))]),
      ]);
      expect(run.calls[0]).toMatchObject({ op: 'setCursor', hotX: 7, hotY: 7 });
    });

    it('rejects a cursor larger than maxCursor before reading its body', () => {
      const run = runParser([
        w.cat(w.u8(0), w.pad(1), w.u16(1), w.rectHeader(0, 0, 4096, 4096, -239)),
      ]);
      expectProtocolError(
        run.error,
        'cursor-too-large',
        /4096x4096 is larger than the 256x256 limit/,
      );
    });
  });

  describe('LastRect', () => {
    it('ends an update announced with 0xFFFF rectangles', () => {
      const run = runParser([
        w.update([w.raw(0, 0, 1, 1, pattern(4)), w.lastRect()], 0xffff),
        w.bell(),
      ]);
      expect(run.error).toBeUndefined();
      expect(run.calls.map((c) => c.op)).toEqual(['putPixels', 'updateEnd', 'bell']);
    });
  });

  it('ends an update with no rectangles at once', () => {
    const run = runParser([w.update([])]);
    expect(run.calls).toEqual([{ op: 'updateEnd' }]);
    expect(run.events).toEqual([{ ev: 'updateEnd', pixels: false }]);
  });

  it.each([
    ['Hextile', 5],
    ['ZRLE', 16],
    ['Tight', 7],
    ['the Fence pseudo-encoding', -312],
    ['the ContinuousUpdates pseudo-encoding', -313],
  ])('rejects a rectangle in %s when we did not ask for it', (_name, encoding) => {
    const run = runParser([w.cat(w.u8(0), w.pad(1), w.u16(1), w.rectHeader(0, 0, 1, 1, encoding))]);
    expectProtocolError(run.error, 'unknown-encoding', new RegExp(`encoding ${encoding}`));
  });
});

describe('SetColourMapEntries', () => {
  it('is rejected: we only use true colour', () => {
    const run = runParser([w.cat(w.u8(1), w.pad(1), w.u16(0), w.u16(1), w.pad(6))]);
    expectProtocolError(run.error, 'colour-map-unsupported');
  });
});

describe('Bell', () => {
  it('rings the sink', () => {
    expect(runParser([w.bell(), w.bell()]).calls).toEqual([{ op: 'bell' }, { op: 'bell' }]);
  });
});

describe('ServerCutText', () => {
  it('decodes Latin-1', () => {
    const run = runParser([w.serverCutText(Buffer.from([0x68, 0xe9, 0x0a, 0xff]))]);
    expect(run.calls).toEqual([{ op: 'serverCutText', text: 'hé\nÿ' }]);
  });

  it('skips a text over maxCutText as it arrives, holding none of it, and goes on', () => {
    const limits = { ...DEFAULT_RFB_LIMITS, maxCutText: 10 };
    const { parser, sink } = makeParser(64, 48, limits);
    const dropped: number[] = [];
    sink.serverCutTextDropped = (length) => dropped.push(length);
    // the header says 1 MiB; the body comes in 64 KiB pieces and none of it stays queued
    expect(parser.push(w.cat(w.u8(3), w.pad(3), w.u32(1024 * 1024)))).toBe('partial');
    expect(dropped).toEqual([1024 * 1024]);
    for (let i = 0; i < 16; i++) {
      parser.push(Buffer.alloc(64 * 1024, 0x41));
      expect(parser.queue.available).toBe(0);
    }
    expect(parser.push(w.serverCutText('ok'))).toBe('idle');
    expect((sink as RecordingSink).calls).toEqual([{ op: 'serverCutText', text: 'ok' }]);
  });

  it('skips a length near 2^32 from the header alone', () => {
    const run = runParser([w.cat(w.u8(3), w.pad(3), w.u32(0xffff_fff0))]);
    expect(run.error).toBeUndefined();
    expect(run.calls).toEqual([]);
  });
});

describe('EndOfContinuousUpdates', () => {
  it('is reported', () => {
    expect(runParser([w.endOfContinuousUpdates()]).events).toEqual([
      { ev: 'endOfContinuousUpdates' },
    ]);
  });
});

describe('ServerFence', () => {
  it('reports flags and payload', () => {
    const run = runParser([
      w.serverFence(FenceFlag.Request | FenceFlag.BlockBefore, Buffer.from([1, 2, 3])),
    ]);
    expect(run.events).toEqual([{ ev: 'fence', flags: 0x8000_0001, payload: '010203' }]);
  });

  it('rejects a payload over 64 bytes', () => {
    const run = runParser([w.cat(w.u8(248), w.pad(3), w.u32(0), w.u8(65))]);
    expectProtocolError(run.error, 'bad-fence');
  });
});

describe('unknown messages', () => {
  it.each([4, 127, 200, 252, 255])('rejects message type %i', (type) => {
    const run = runParser([w.u8(type)]);
    expectProtocolError(run.error, 'unknown-message-type', new RegExp(`type ${type}`));
  });

  it('stays failed after an error', () => {
    const { parser } = makeParser(64, 48);
    expect(() => parser.push(w.u8(99))).toThrow(RfbProtocolError);
    expect(() => parser.push(w.bell())).toThrow(/unknown message type 99/);
  });
});

/** One of every message kind, for the splitting tests. */
function everything(): Buffer {
  return w.cat(
    w.update([
      w.extendedDesktopSize(0, 0, 64, 48),
      w.cursor(1, 2, 9, 3, pattern(9 * 3 * 4, 1), pattern(2 * 3, 5)),
    ]),
    w.update([w.raw(0, 0, 16, 12, pattern(16 * 12 * 4, 9)), w.copyRect(1, 2, 30, 20, 20, 25)]),
    w.serverFence(FenceFlag.Request | FenceFlag.BlockBefore, Buffer.from('ping')),
    w.endOfContinuousUpdates(),
    w.bell(),
    w.serverCutText('clip\nboard'),
    w.update([w.desktopSize(80, 50)]),
    w.update([w.raw(70, 40, 10, 10, pattern(400, 4)), w.lastRect()], 0xffff),
    w.update([]),
  );
}

/** sink calls and events as one string: cheap to compare thousands of times */
function transcript(run: { calls: unknown[]; events: unknown[]; error: unknown }): string {
  const replacer = (_k: string, v: unknown): unknown =>
    v !== null && typeof v === 'object' && (v as { type?: string }).type === 'Buffer'
      ? Buffer.from((v as { data: number[] }).data).toString('hex')
      : v;
  return JSON.stringify(
    { calls: run.calls, events: run.events, error: String(run.error) },
    replacer,
  );
}

describe('stream splitting', () => {
  const stream = everything();
  const whole = runParser([stream]);
  const expected = transcript(whole);

  it('decodes the reference stream without error', () => {
    expect(whole.error).toBeUndefined();
    expect(whole.calls.filter((c) => c.op === 'updateEnd')).toHaveLength(5);
  });

  it('decodes identically split in two at every byte boundary', () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const got = transcript(runParser(w.splitAt(stream, [cut])));
      if (got !== expected) expect({ cut, got }).toEqual({ cut, got: expected });
    }
  });

  it('decodes identically fed byte by byte', () => {
    expect(transcript(runParser(bytewise(stream)))).toBe(expected);
  });

  it('decodes identically for random splits (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 40 }),
        (cuts) => {
          expect(transcript(runParser(w.splitAt(stream, cuts)))).toBe(expected);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('properties', () => {
  type Op =
    | { kind: 'raw'; x: number; y: number; w: number; h: number; seed: number }
    | { kind: 'copy'; x: number; y: number; w: number; h: number; sx: number; sy: number };

  /** a framebuffer size and updates of in-bounds Raw and CopyRect rectangles */
  const scenario = fc
    .record({ width: fc.integer({ min: 1, max: 40 }), height: fc.integer({ min: 1, max: 30 }) })
    .chain(({ width, height }) => {
      const rect = fc.record({ x: fc.nat(width - 1), y: fc.nat(height - 1) }).chain(({ x, y }) =>
        fc.record({
          x: fc.constant(x),
          y: fc.constant(y),
          w: fc.integer({ min: 0, max: width - x }),
          h: fc.integer({ min: 0, max: height - y }),
        }),
      );
      const op: fc.Arbitrary<Op> = fc.oneof(
        rect.chain((r) =>
          fc.record({ kind: fc.constant('raw' as const), ...constants(r), seed: fc.nat(255) }),
        ),
        rect.chain((r) =>
          fc.record({
            kind: fc.constant('copy' as const),
            ...constants(r),
            sx: fc.nat(width - r.w),
            sy: fc.nat(height - r.h),
          }),
        ),
      );
      return fc.record({
        width: fc.constant(width),
        height: fc.constant(height),
        updates: fc.array(fc.array(op, { maxLength: 6 }), { minLength: 1, maxLength: 5 }),
        cuts: fc.array(fc.nat(), { maxLength: 20 }),
      });
    });

  function constants<T extends object>(o: T): { [K in keyof T]: fc.Arbitrary<T[K]> } {
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, fc.constant(v)])) as {
      [K in keyof T]: fc.Arbitrary<T[K]>;
    };
  }

  it('generated valid updates round-trip into the expected framebuffer', () => {
    fc.assert(
      fc.property(scenario, ({ width, height, updates, cuts }) => {
        // expected: apply the ops directly to a model
        const expected = new FramebufferModel();
        expected.resize(width, height);
        const wireUpdates = updates.map((ops) => {
          const rects = ops.map((op) => {
            if (op.kind === 'raw') {
              const px = pattern(op.w * op.h * 4, op.seed);
              if (op.w > 0 && op.h > 0) expected.putPixels(op.x, op.y, op.w, op.h, px);
              return w.raw(op.x, op.y, op.w, op.h, px);
            }
            if (op.w > 0 && op.h > 0) expected.copyRect(op.sx, op.sy, op.x, op.y, op.w, op.h);
            return w.copyRect(op.x, op.y, op.w, op.h, op.sx, op.sy);
          });
          expected.updateEnd();
          return w.update(rects);
        });
        const stream = w.cat(...wireUpdates);
        const actual = new FramebufferModel();
        actual.resize(width, height);
        const { parser } = makeParser(width, height, DEFAULT_RFB_LIMITS, actual);
        for (const chunk of w.splitAt(
          stream,
          cuts.map((c) => c % (stream.length + 1)),
        ))
          parser.push(chunk);
        expect(actual.updates).toBe(updates.length);
        expect(actual.data.equals(expected.data)).toBe(true);
        expect(parser.queue.available).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('random garbage never crashes: it only throws RfbProtocolError or waits', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 600 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.constantFrom<number[]>([], [0], [0, 0], [0, 0, 0, 1], [3], [248]),
        (garbage, cuts, prefix) => {
          // prefixes steer some runs into FramebufferUpdate, ServerCutText and ServerFence
          const bytes = w.cat(Buffer.from(prefix), garbage);
          const run = runParser(
            w.splitAt(
              bytes,
              cuts.map((c) => c % (bytes.length + 1)),
            ),
            32,
            32,
          );
          if (run.error !== undefined) expect(run.error).toBeInstanceOf(RfbProtocolError);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
