import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../../../src/rfb/byte-queue.js';
import { FIRST_ARENA_BYTES, MAX_ARENA_BYTES, ReadArena } from '../../../src/rfb/read-arena.js';

/**
 * The arena against what a socket and a parser do to it: reads of any size up to what it
 * lends, a queue that keeps views of them, and a parser that takes some of the queue after
 * each read. Every byte the parser takes must be the byte the stream sent there: nothing
 * unread is ever lent again.
 */
describe('ReadArena (where the RFB socket reads into)', () => {
  it('never lends bytes the queue still holds, however reads and parsing interleave', () => {
    const arenas: ReadArena[] = [];
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            read: fc.integer({ min: 1, max: 100 }), // % of the lent buffer
            // mostly a parser that keeps up (the arena laps), now and then one that lags
            take: fc.oneof(
              { weight: 3, arbitrary: fc.integer({ min: 80, max: 100 }) },
              { weight: 1, arbitrary: fc.integer({ min: 0, max: 100 }) },
            ), // % of the queue
          }),
          { minLength: 1, maxLength: 150 },
        ),
        fc.constantFrom(1024, 4096),
        (steps, first) => {
          const arena = new ReadArena(first);
          arenas.push(arena);
          const queue = new ByteQueue();
          /** the views the queue holds, with the stream offset of each one's first byte */
          const views: { buf: Buffer; at: number }[] = [];
          let sent = 0; // stream offset of the next byte the "socket" delivers
          let taken = 0; // stream offset of the next byte the "parser" takes
          const byteAt = (i: number) => (i * 131 + (i >>> 8) * 7) & 0xff;
          for (const { read, take } of steps) {
            const buf = arena.next(queue.available);
            expect(buf.length).toBeGreaterThan(0);
            const n = Math.ceil((read * buf.length) / 100);
            for (let i = 0; i < n; i++) buf[i] = byteAt(sent + i);
            const view = arena.wrote(n);
            queue.push(view);
            views.push({ buf: view, at: sent });
            sent += n;
            // the parser takes a share of what is queued
            const k = Math.floor((take * queue.available) / 100);
            queue.skip(k);
            taken += k;
            while (views.length > 0 && views[0]!.at + views[0]!.buf.length <= taken) views.shift();
            // every byte still queued is the one sent there
            for (const v of views)
              for (let i = Math.max(0, taken - v.at); i < v.buf.length; i++)
                if (v.buf[i] !== byteAt(v.at + i))
                  expect.fail(`byte ${v.at + i} overwritten while queued`);
          }
        },
      ),
      { numRuns: 300 },
    );
    // the runs went back to the start of their arena with bytes of the last lap still queued
    expect(arenas.reduce((n, a) => n + a.laps, 0)).toBeGreaterThan(50);
  });

  it('stops a new lap short of the bytes of the last one still queued', () => {
    const arena = new ReadArena(1024); // reads of 256 at most
    const queue = new ByteQueue();
    for (let i = 0; i < 4; i++) {
      const b = arena.next(queue.available);
      b.fill(i);
      queue.push(arena.wrote(b.length));
    }
    queue.skip(1024 - 100); // the last 100 bytes (offsets 924-1023) stay queued
    const lap = [arena.next(queue.available)];
    expect(arena.laps).toBe(1);
    expect(lap[0]!.length).toBe(256); // at the start again, before offset 924
    queue.push(arena.wrote(lap[0]!.length));
    for (let i = 0; i < 3; i++) {
      const b = arena.next(queue.available);
      if (b.length === 0) break;
      b.fill(0xee);
      lap.push(b);
      queue.push(arena.wrote(b.length));
    }
    // what the new lap was lent ends where the queued bytes begin, which are untouched
    expect(lap.reduce((n, b) => n + b.length, 0)).toBe(924);
    expect([...queue.read(100)]).toEqual(new Array(100).fill(3));
  });

  it('laps round one arena while the parser keeps up, and grows when it falls behind', () => {
    const arena = new ReadArena();
    const queue = new ByteQueue();
    const first = arena.next(0);
    expect(first.length).toBe(FIRST_ARENA_BYTES / 4);
    const backing = first.buffer;
    // a parser that takes everything: 64 laps of 4 reads, never a new arena
    for (let i = 0; i < 256; i++) {
      const b = i === 0 ? first : arena.next(queue.available);
      expect(b.buffer).toBe(backing);
      queue.push(arena.wrote(b.length));
      queue.skip(queue.available);
    }
    // a parser that takes nothing: the arena cannot lap over what is queued, so it grows
    let b = arena.next(0);
    for (let i = 0; i < 40; i++) {
      queue.push(arena.wrote(b.length));
      b = arena.next(queue.available);
    }
    expect(arena.size).toBe(MAX_ARENA_BYTES);
  });

  it('refuses a read bigger than what it lent', () => {
    const arena = new ReadArena(4096);
    expect(() => arena.wrote(1)).toThrow(RangeError);
    arena.next(0);
    expect(() => arena.wrote(4097)).toThrow(RangeError);
  });
});
