import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../../../src/rfb/byte-queue.js';

function queueOf(...chunks: number[][]): ByteQueue {
  const q = new ByteQueue();
  for (const c of chunks) q.push(Buffer.from(c));
  return q;
}

describe('ByteQueue', () => {
  it('counts available bytes across chunks and ignores empty chunks', () => {
    const q = queueOf([1, 2], [], [3]);
    expect(q.available).toBe(3);
  });

  it('reads big-endian integers that span chunk boundaries', () => {
    const q = queueOf([0x12], [0x34, 0x56], [0x78, 0xff], [0xff, 0xff, 0xfe], [0x80, 0x00]);
    expect(q.peekU16()).toBe(0x1234);
    expect(q.peekU32()).toBe(0x1234_5678);
    expect(q.readU32()).toBe(0x1234_5678);
    expect(q.readS32()).toBe(-2);
    expect(q.readU16()).toBe(0x8000);
    expect(q.available).toBe(0);
  });

  it('keeps u32 unsigned and s32 signed', () => {
    expect(queueOf([0xff, 0xff], [0xff, 0xff]).readU32()).toBe(0xffff_ffff);
    expect(queueOf([0x80, 0, 0, 0]).readS32()).toBe(-0x8000_0000);
  });

  it('peeks at an offset without consuming', () => {
    const q = queueOf([1, 2, 3], [4, 5]);
    expect(q.peekU8(3)).toBe(4);
    expect(q.peekU16(2)).toBe(0x0304);
    expect(q.available).toBe(5);
  });

  it('returns a view, not a copy, when a read fits in one chunk', () => {
    const chunk = Buffer.from([1, 2, 3, 4]);
    const q = new ByteQueue();
    q.push(chunk);
    q.skip(1);
    const view = q.read(2);
    expect([...view]).toEqual([2, 3]);
    expect(view.buffer).toBe(chunk.buffer);
  });

  it('copies once when a read spans chunks', () => {
    const q = queueOf([1, 2], [3], [4, 5, 6]);
    q.skip(1);
    expect([...q.read(4)]).toEqual([2, 3, 4, 5]);
    expect([...q.read(1)]).toEqual([6]);
  });

  it('reads into a target across chunks, and refuses a read past the queue or the target', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.nat(),
        fc.nat(),
        (data, cuts, skip, at) => {
          const whole = Buffer.from(data);
          const q = new ByteQueue();
          let prev = 0;
          for (const c of cuts.map((c) => c % (whole.length + 1)).sort((a, b) => a - b)) {
            q.push(whole.subarray(prev, c));
            prev = c;
          }
          q.push(whole.subarray(prev));
          const from = skip % whole.length;
          q.skip(from);
          const n = whole.length - from;
          const dst = Buffer.alloc(n + 8, 0xee);
          const pos = at % 9;
          expect(() => q.readInto(dst, dst.length - n + 1, n)).toThrow(RangeError);
          expect(q.available).toBe(n);
          q.readInto(dst, pos, n);
          expect(dst.subarray(pos, pos + n).equals(whole.subarray(from))).toBe(true);
          expect(dst.subarray(0, pos).every((b) => b === 0xee)).toBe(true);
          expect(q.available).toBe(0);
          expect(() => q.readInto(dst, 0, 1)).toThrow(RangeError);
        },
      ),
    );
  });

  it('throws RangeError when reading past the end', () => {
    const q = queueOf([1, 2, 3]);
    expect(() => q.readU32()).toThrow(RangeError);
    expect(() => q.read(4)).toThrow(RangeError);
    expect(() => q.peekU8(3)).toThrow(RangeError);
    expect(q.available).toBe(3);
  });

  it('handles a long run of one-byte chunks in linear time', () => {
    const q = new ByteQueue();
    const n = 200_000;
    for (let i = 0; i < n; i++) q.push(Buffer.from([i & 0xff]));
    let sum = 0;
    for (let i = 0; i < n / 2; i++) sum += q.readU16() >> 8;
    expect(q.available).toBe(0);
    expect(sum).toBeGreaterThan(0);
  });

  it('reads the same bytes however the input is chunked (fast-check)', () => {
    type Read =
      { op: 'u8' | 'u16' | 'u32' | 's32' } | { op: 'bytes'; n: number } | { op: 'skip'; n: number };
    const read: fc.Arbitrary<Read> = fc.oneof(
      fc.constantFrom<Read>({ op: 'u8' }, { op: 'u16' }, { op: 'u32' }, { op: 's32' }),
      fc.record({ op: fc.constant('bytes' as const), n: fc.nat(40) }),
      fc.record({ op: fc.constant('skip' as const), n: fc.nat(10) }),
    );
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        fc.array(read),
        (data, cuts, reads) => {
          const whole = Buffer.from(data);
          const q = new ByteQueue();
          let prev = 0;
          for (const c of [...cuts.map((c) => c % (whole.length + 1))].sort((a, b) => a - b)) {
            q.push(whole.subarray(prev, c));
            prev = c;
          }
          q.push(whole.subarray(prev));
          let pos = 0;
          for (const r of reads) {
            const size = 'n' in r ? r.n : r.op === 'u8' ? 1 : r.op === 'u16' ? 2 : 4;
            if (pos + size > whole.length) break;
            switch (r.op) {
              case 'u8':
                expect(q.readU8()).toBe(whole.readUInt8(pos));
                break;
              case 'u16':
                expect(q.readU16()).toBe(whole.readUInt16BE(pos));
                break;
              case 'u32':
                expect(q.readU32()).toBe(whole.readUInt32BE(pos));
                break;
              case 's32':
                expect(q.readS32()).toBe(whole.readInt32BE(pos));
                break;
              case 'bytes':
                expect(q.read(r.n).equals(whole.subarray(pos, pos + r.n))).toBe(true);
                break;
              case 'skip':
                q.skip(r.n);
                break;
            }
            pos += size;
            expect(q.available).toBe(whole.length - pos);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
