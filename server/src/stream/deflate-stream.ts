import zlib from 'node:zlib';

/** What every sync flush ends with; left off the wire and put back by the receiver. */
export const SYNC_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/**
 * Segments up to this size are compressed on the calling thread when nothing is queued before
 * them. A trip to the zlib thread costs 55–70 µs of CPU (the stream's write, the pool's
 * hand-over and wake-ups, the callback) where compressing a typed glyph takes 3–5 µs; a
 * 16 KiB segment of new content took 62–115 µs here, and larger ones go to the pool.
 */
export const SYNC_MAX_BYTES = 16 * 1024;

/**
 * Where the synchronous path's output lands before it is copied out: room for a whole
 * segment (stored blocks make deflate output at most a few bytes per 16 KiB larger than its
 * input, plus the flush). Shared by every stream: that path never yields mid-segment.
 */
const scratch = Buffer.alloc(SYNC_MAX_BYTES + 1024);

/**
 * The parts of Node's zlib object the synchronous path uses: the native handle's writeSync
 * and the state array it reports into (what zlib's own *Sync functions use; not public API,
 * so checked at run time, and the pool path is used where they are missing).
 */
interface ZlibInternals {
  _handle?: {
    writeSync?: (
      flush: number,
      input: Uint8Array,
      inOff: number,
      inLen: number,
      out: Buffer,
      outOff: number,
      outLen: number,
    ) => void;
  } | null;
  _writeState?: Uint32Array;
}

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
  /** segments handed to the zlib thread and not yet done */
  private queued = 0;
  /** closed (its viewer is gone): a write still in flight ends with no output */
  private closed = false;
  /** segments compressed on the calling thread, since this stream was made (for tests) */
  syncSegments = 0;

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
    this.queued = 0;
    old.close();
  }

  /**
   * Compress one segment. Calls are queued in call order, so a frame's segments come out in
   * the order its rects were handed over.
   */
  compress(data: Uint8Array): Promise<Buffer> {
    if (this.queued === 0 && data.byteLength <= SYNC_MAX_BYTES) {
      try {
        const out = this.compressHere(data);
        if (out) return Promise.resolve(out);
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
    const z = this.z;
    this.queued++;
    const done = () => {
      if (z === this.z) this.queued--;
    };
    const job = this.tail.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          this.chunks = [];
          z.write(data, (e) => {
            if (e) return reject(e);
            if (z !== this.z) return reject(new Error('the deflate stream was reset'));
            if (this.closed) return reject(new Error('the deflate stream was closed'));
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
    this.tail = job.then(done, done);
    return job;
  }

  /**
   * One segment compressed synchronously on the stream's own native handle (nothing is queued
   * on it, so its state is where the last segment left it); undefined when this Node does not
   * have what it needs.
   */
  private compressHere(data: Uint8Array): Buffer | undefined {
    const z = this.z as unknown as ZlibInternals;
    const handle = z._handle;
    const state = z._writeState;
    if (!handle || typeof handle.writeSync !== 'function' || !(state instanceof Uint32Array))
      return undefined;
    const parts: Buffer[] = [];
    const out = scratch;
    let inOff = 0;
    let inLen = data.byteLength;
    for (;;) {
      handle.writeSync(zlib.constants.Z_SYNC_FLUSH, data, inOff, inLen, out, 0, out.length);
      if (this.z.destroyed) throw new Error('the deflate stream failed');
      const availOut = state[0]!;
      const availIn = state[1]!;
      // copied out of the scratch buffer, which the next segment reuses
      if (out.length > availOut) parts.push(Buffer.from(out.subarray(0, out.length - availOut)));
      // a full output buffer: there may be more to come
      if (availOut !== 0) break;
      inOff += inLen - availIn;
      inLen = availIn;
    }
    this.syncSegments++;
    const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    if (!all.subarray(all.length - SYNC_TAIL.length).equals(SYNC_TAIL))
      throw new Error('deflate segment did not end with a sync flush');
    return all.subarray(0, all.length - SYNC_TAIL.length);
  }

  close(): void {
    this.closed = true;
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
