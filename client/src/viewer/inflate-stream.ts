/**
 * The receiving end of the server's per-viewer zlib stream (server/src/stream/deflate-stream.ts,
 * shared/src/frame.ts): every DeflateRgb/DeflatePalette rect carries one sync-flushed segment
 * without its final 00 00 FF FF. Segments are inflated strictly in arrival order on one
 * DecompressionStream; a keyframe starts a new one (reset). Strict like the rest: a segment
 * must inflate to exactly the size its rect needs, or the stream is broken until the next
 * keyframe (the viewer asks for one).
 */
import { browserClock, type Clock } from '../clock';
import { PixelFormatError } from './pixel-format-error';

const SYNC_TAIL = Uint8Array.of(0x00, 0x00, 0xff, 0xff);
/** A segment whose output stops short would otherwise wait for more input forever, ms. */
export const SHORT_OUTPUT_TIMEOUT_MS = 3000;

interface Generation {
  writer: WritableStreamDefaultWriter<BufferSource>;
  reader: ReadableStreamDefaultReader<Uint8Array>;
  broken: Error | undefined;
  chain: Promise<unknown>;
}

export class InflateStream {
  private gen: Generation = this.open();

  constructor(private readonly clock: Clock = browserClock) {}

  private open(): Generation {
    const ds = new DecompressionStream('deflate-raw');
    const writer = ds.writable.getWriter();
    const reader = ds.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    return { writer, reader, broken: undefined, chain: Promise.resolve() };
  }

  /** A keyframe: later segments belong to a new stream (earlier ones still finish on theirs). */
  reset(): void {
    const old = this.gen;
    this.gen = this.open();
    void old.chain.then(() => {
      old.reader.cancel().catch(() => {});
      old.writer.abort().catch(() => {});
    });
  }

  /** Inflate one segment to exactly `expected` bytes, after every segment given before it. */
  inflate(segment: Uint8Array, expected: number): Promise<Uint8Array> {
    const gen = this.gen;
    const job = gen.chain.then(() => this.run(gen, segment, expected));
    gen.chain = job.catch(() => {});
    return job;
  }

  private async run(gen: Generation, segment: Uint8Array, expected: number): Promise<Uint8Array> {
    if (gen.broken) throw gen.broken;
    const input = new Uint8Array(segment.byteLength + SYNC_TAIL.byteLength);
    input.set(segment);
    input.set(SYNC_TAIL, segment.byteLength);
    // errors surface on the reader; this only keeps them from being reported twice
    gen.writer.write(input).catch(() => {});
    const out = new Uint8Array(expected);
    let filled = 0;
    try {
      while (filled < expected) {
        const { done, value } = await this.readWithin(gen.reader.read());
        if (done) throw new PixelFormatError('zlib stream ended early');
        if (filled + value.byteLength > expected) {
          throw new PixelFormatError(`inflated data exceeds the ${expected} bytes expected`);
        }
        out.set(value, filled);
        filled += value.byteLength;
      }
    } catch (err) {
      gen.broken =
        err instanceof PixelFormatError
          ? err
          : new PixelFormatError(
              `corrupt deflate data: ${err instanceof Error ? err.message : String(err)}`,
            );
      throw gen.broken;
    }
    return out;
  }

  /** One read of the inflated output, given up after SHORT_OUTPUT_TIMEOUT_MS. */
  private readWithin<T>(read: Promise<T>): Promise<T> {
    let cancel = (): void => {};
    const late = new Promise<never>((_, reject) => {
      cancel = this.clock.after(SHORT_OUTPUT_TIMEOUT_MS, () =>
        reject(new PixelFormatError('segment inflated to fewer bytes than its rect needs')),
      );
    });
    return Promise.race([read, late]).finally(cancel);
  }
}
