/**
 * Where an RFB socket reads into (net's `onread`): one buffer used lap after lap instead of
 * a new one per read. A 1920×1080 desktop in motion sends 250 MB/s of Raw pixels over the
 * loopback; with a fresh 64 KiB buffer per read, V8 counted every one as external memory and
 * ran a full collection every fraction of a second (its concurrent marking was a quarter of
 * the gateway's CPU samples under `perf` on the 1080p animation).
 *
 * The ByteQueue keeps views of what was read until the parser has taken it, so the arena
 * never hands out bytes still unread: the next read goes after the last one, or, once the
 * end is near, back at the start if everything unread lies past the room it needs; else a
 * new arena takes over (twice the size, up to MAX_ARENA_BYTES) and the old one lives as long
 * as the queue holds views of it.
 */

/** The first arena of a connection, bytes. */
export const FIRST_ARENA_BYTES = 256 * 1024;
/** The arena grows no bigger than this. */
export const MAX_ARENA_BYTES = 2 * 1024 * 1024;

export class ReadArena {
  private arena: Buffer;
  /** where the next read goes (just past the last one) */
  private pos = 0;
  /** bytes read through this arena so far (the stream offset just past the last read) */
  private received = 0;
  /** stream offset of the byte at arena offset 0 in the current lap */
  private lapStart = 0;
  /** stream offset of offset 0 in the previous lap, while some of it is still unread */
  private previousLap: number | undefined;
  /** the buffer handed out by next(), not yet written */
  private lent: Buffer | undefined;
  /** times a read went back to the start of the arena (for tests) */
  laps = 0;

  constructor(size = FIRST_ARENA_BYTES) {
    this.arena = Buffer.allocUnsafe(size);
  }

  /** bytes of the current arena */
  get size(): number {
    return this.arena.length;
  }

  /**
   * The buffer the next read goes into, `unread` being how many of the bytes read so far
   * are still queued (the newest ones).
   */
  next(unread: number): Buffer {
    const size = this.arena.length;
    const readBytes = size / 4;
    const least = size / 16;
    const firstUnread = this.received - unread;
    // the current lap may run up to the previous lap's oldest unread byte
    let limit = size;
    if (this.previousLap !== undefined && firstUnread < this.lapStart)
      limit = firstUnread - this.previousLap;
    else this.previousLap = undefined;
    if (limit - this.pos >= least)
      return this.lend(this.pos, Math.min(limit, this.pos + readBytes));
    // back to the start, if the unread bytes are all in this lap and leave room before them
    // (an unread byte of an earlier lap or arena puts unreadAt below zero)
    const unreadAt = firstUnread - this.lapStart;
    if (unreadAt >= least) {
      this.laps++;
      this.previousLap = this.lapStart;
      this.lapStart = this.received;
      this.pos = 0;
      return this.lend(0, Math.min(unreadAt, readBytes));
    }
    // a new arena (the queue holds more than this one has room around)
    this.arena = Buffer.allocUnsafe(Math.min(MAX_ARENA_BYTES, size * 2));
    this.pos = 0;
    this.lapStart = this.received;
    this.previousLap = undefined;
    return this.lend(0, this.arena.length / 4);
  }

  /** A read of `n` bytes landed in the buffer next() gave: the view of them, to queue. */
  wrote(n: number): Buffer {
    const lent = this.lent;
    if (lent === undefined || n > lent.length)
      throw new RangeError(`a read of ${n} bytes into ${lent?.length ?? 'no'} lent bytes`);
    this.lent = undefined;
    this.pos += n;
    this.received += n;
    return lent.subarray(0, n);
  }

  private lend(from: number, to: number): Buffer {
    this.lent = this.arena.subarray(from, to);
    return this.lent;
  }
}
