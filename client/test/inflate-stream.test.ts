import { describe, expect, it } from 'vitest';
import { PixelFormatError } from '../src/viewer/pixel-format-error';
import { InflateStream, SHORT_OUTPUT_TIMEOUT_MS } from '../src/viewer/inflate-stream';
import { segment } from './helpers/deflate-segment';
import { ManualClock } from './helpers/manual-clock';

describe('InflateStream', () => {
  it('inflates segments of one stream in order, to exactly the size asked', async () => {
    const z = new InflateStream(new ManualClock());
    const a = new Uint8Array(1000).map((_, i) => (i * 7) & 0xff);
    const b = Uint8Array.of(1, 2, 3);
    const [ra, rb] = await Promise.all([
      z.inflate(segment(a), a.byteLength),
      z.inflate(segment(b), 3),
    ]);
    expect(ra).toEqual(a);
    expect(rb).toEqual(b);
  });

  it('rejects a segment that inflates to more than expected (no bombs), and stays broken', async () => {
    const z = new InflateStream(new ManualClock());
    await expect(z.inflate(segment(new Uint8Array(100)), 10)).rejects.toBeInstanceOf(
      PixelFormatError,
    );
    await expect(z.inflate(segment(new Uint8Array(4)), 4)).rejects.toBeInstanceOf(PixelFormatError);
    z.reset(); // a keyframe: a fresh stream works again
    expect(await z.inflate(segment(Uint8Array.of(9)), 1)).toEqual(Uint8Array.of(9));
  });

  it('rejects a segment that inflates to less than expected, once no more comes for 3 s', async () => {
    const clock = new ManualClock();
    let settled = false;
    const short = new InflateStream(clock).inflate(segment(new Uint8Array(10)), 12);
    void short.finally(() => (settled = true)).catch(() => {});
    await expect.poll(() => clock.pending).toBe(1); // a read waits on the clock
    clock.advance(SHORT_OUTPUT_TIMEOUT_MS - 1);
    await new Promise((r) => setImmediate(r)); // a settlement, had there been one, surfaces
    expect(settled).toBe(false);
    await expect(clock.settle(short, SHORT_OUTPUT_TIMEOUT_MS)).rejects.toThrow(/fewer bytes/);
  });

  it('rejects corrupt deflate data', async () => {
    await expect(
      new InflateStream(new ManualClock()).inflate(Uint8Array.of(0xff, 0xff, 0xff, 0x00), 4),
    ).rejects.toBeInstanceOf(PixelFormatError);
  });
});
