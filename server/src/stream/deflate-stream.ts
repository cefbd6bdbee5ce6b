import zlib from 'node:zlib';

/** What every sync flush ends with; left off the wire and put back by the receiver. */
export const SYNC_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/**
 * One raw-deflate stream per viewer, shared by all its zlib-coded rects (as VNC's Tight and
 * ZRLE keep theirs): a glyph typed again compresses against the last 32 KiB already sent, so
 * small text updates shrink to a few bytes. Each rect is one sync-flushed segment, in the
 * order the rects appear in the frames; both ends restart the stream at every keyframe.
 */
export class DeflateStream {
  private z: zlib.DeflateRaw;
  private tail: Promise<unknown> = Promise.resolve();
  /** output of the write in progress (writes are serialised through `tail`) */
  private chunks: Buffer[] = [];

  constructor(private readonly level = 6) {
    this.z = this.open();
  }

  private open(): zlib.DeflateRaw {
    // memLevel 8 and a 32 KiB window: about 256 KiB per viewer. Every write is sync-flushed
    // (`flush`), so a segment costs one trip to the zlib thread, not a write and a flush.
    const z = zlib.createDeflateRaw({
      level: this.level,
      memLevel: 8,
      windowBits: 15,
      flush: zlib.constants.Z_SYNC_FLUSH,
    });
    z.on('data', (c: Buffer) => {
      if (z === this.z) this.chunks.push(c);
    });
    // an error also reaches the pending write's callback, which rejects that segment: the
    // event itself must not go unhandled (it would end the process)
    z.on('error', () => undefined);
    return z;
  }

  /** Start over (a keyframe): segments after this decode without earlier ones. */
  reset(): void {
    const old = this.z;
    this.z = this.open();
    this.tail = Promise.resolve();
    this.chunks = [];
    old.close();
  }

  /**
   * Compress one segment. Calls are queued in call order, so a frame's segments come out in
   * the order its rects were handed over.
   */
  compress(data: Uint8Array): Promise<Buffer> {
    const z = this.z;
    const job = this.tail.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          this.chunks = [];
          z.write(data, (e) => {
            if (e) return reject(e);
            if (z !== this.z) return reject(new Error('the deflate stream was reset'));
            const out = Buffer.concat(this.chunks);
            this.chunks = [];
            // a sync flush always ends with an empty stored block: 00 00 FF FF (and its
            // output is all here by the time the write completes; checked, not assumed)
            if (!out.subarray(out.length - SYNC_TAIL.length).equals(SYNC_TAIL))
              return reject(new Error('deflate segment did not end with a sync flush'));
            resolve(out.subarray(0, out.length - SYNC_TAIL.length));
          });
        }),
    );
    this.tail = job.catch(() => undefined);
    return job;
  }

  close(): void {
    this.z.close();
  }
}

/**
 * The receiving end, for tests and tools: inflates segments of one stream in order.
 * (The browser has its own, on DecompressionStream.)
 */
export class InflateSegments {
  private compressed: Buffer[] = [];
  private produced = 0;

  reset(): void {
    this.compressed = [];
    this.produced = 0;
  }

  inflate(segment: Uint8Array): Buffer {
    this.compressed.push(Buffer.from(segment), SYNC_TAIL);
    const all = zlib.inflateRawSync(Buffer.concat(this.compressed), {
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
    });
    const out = all.subarray(this.produced);
    this.produced = all.length;
    return out;
  }
}
