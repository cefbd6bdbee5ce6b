/**
 * Bytes received but not yet parsed. Chunks are kept as they arrived (no copying on
 * append); reads that fit in one chunk return a view into it, and only reads that span
 * chunks copy, once. So parsing costs O(bytes), however the stream was split.
 *
 * Callers check `available` before reading: reading past the end is a programming error
 * and throws a RangeError (a parser that waits for bytes never does it).
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** index in `chunks` of the first chunk with unread bytes */
  private head = 0;
  /** read position inside `chunks[head]` */
  private offset = 0;
  private size = 0;

  /** unread bytes */
  get available(): number {
    return this.size;
  }

  /** Append a chunk. The queue keeps a reference: the caller must not modify it afterwards. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const buf = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    this.chunks.push(buf);
    this.size += buf.length;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.offset = 0;
    this.size = 0;
  }

  peekU8(at = 0): number {
    this.need(at + 1);
    return this.byteAt(at);
  }

  peekU16(at = 0): number {
    this.need(at + 2);
    const head = this.headChunk();
    const pos = this.offset + at;
    if (pos + 2 <= head.length) return head.readUInt16BE(pos);
    return (this.byteAt(at) << 8) | this.byteAt(at + 1);
  }

  peekU32(at = 0): number {
    this.need(at + 4);
    const head = this.headChunk();
    const pos = this.offset + at;
    if (pos + 4 <= head.length) return head.readUInt32BE(pos);
    // multiply instead of << 24 so the result stays unsigned
    return (
      this.byteAt(at) * 0x100_0000 +
      ((this.byteAt(at + 1) << 16) | (this.byteAt(at + 2) << 8) | this.byteAt(at + 3))
    );
  }

  peekS32(at = 0): number {
    return this.peekU32(at) | 0;
  }

  readU8(): number {
    const v = this.peekU8();
    this.skip(1);
    return v;
  }

  readU16(): number {
    const v = this.peekU16();
    this.skip(2);
    return v;
  }

  readU32(): number {
    const v = this.peekU32();
    this.skip(4);
    return v;
  }

  readS32(): number {
    const v = this.peekS32();
    this.skip(4);
    return v;
  }

  /**
   * Take `n` bytes. The result may be a view into a received chunk: treat it as
   * read-only and copy it if it must outlive the current parse step.
   */
  read(n: number): Buffer {
    this.need(n);
    if (n === 0) return Buffer.alloc(0);
    const head = this.headChunk();
    if (this.offset + n <= head.length) {
      const view = head.subarray(this.offset, this.offset + n);
      this.skip(n);
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    let written = 0;
    while (written < n) {
      const chunk = this.headChunk();
      const take = Math.min(n - written, chunk.length - this.offset);
      chunk.copy(out, written, this.offset, this.offset + take);
      written += take;
      this.skip(take);
    }
    return out;
  }

  /**
   * Take `n` bytes straight into `dst` at `at`: one copy from the received chunks, none in
   * between (Raw pixels go from the socket's chunks into the mirror this way).
   */
  readInto(dst: Uint8Array, at: number, n: number): void {
    this.need(n);
    if (at < 0 || at + n > dst.length) throw new RangeError('ByteQueue: readInto past the target');
    let written = 0;
    while (written < n) {
      const chunk = this.headChunk();
      const take = Math.min(n - written, chunk.length - this.offset);
      chunk.copy(dst, at + written, this.offset, this.offset + take);
      written += take;
      this.skip(take);
    }
  }

  /** Drop `n` bytes. */
  skip(n: number): void {
    this.need(n);
    this.size -= n;
    let left = n;
    while (left > 0) {
      const chunk = this.headChunk();
      const inChunk = chunk.length - this.offset;
      if (left < inChunk) {
        this.offset += left;
        return;
      }
      left -= inChunk;
      this.head++;
      this.offset = 0;
    }
    // Keep the chunk array from growing without bound while staying O(1) amortised:
    // compact once the consumed prefix is both long and at least half the array.
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head >= 64 && this.head * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }

  private need(n: number): void {
    if (n > this.size) {
      throw new RangeError(`ByteQueue: ${n} bytes wanted, ${this.size} available`);
    }
  }

  private headChunk(): Buffer {
    const chunk = this.chunks[this.head];
    if (chunk === undefined) throw new RangeError('ByteQueue: empty');
    return chunk;
  }

  /** byte `at` positions after the read position; caller has checked it exists */
  private byteAt(at: number): number {
    let i = this.head;
    let pos = this.offset + at;
    for (;;) {
      const chunk = this.chunks[i];
      if (chunk === undefined) throw new RangeError('ByteQueue: past the end');
      if (pos < chunk.length) return chunk[pos] as number;
      pos -= chunk.length;
      i++;
    }
  }
}
