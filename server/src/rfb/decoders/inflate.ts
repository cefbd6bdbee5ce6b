/**
 * One zlib stream of an RFB connection (ZRLE has one, Tight four), inflated one rectangle at
 * a time and synchronously, so the parser stays a plain state machine.
 *
 * The server runs one deflate stream for the whole connection and ends each rectangle's
 * share with a sync flush, so every share starts on a block boundary and may refer back to
 * the last 32 KiB the stream produced. We keep that window and hand it to a fresh raw
 * inflate as its preset dictionary: the same bytes come out as from one long-lived inflate,
 * through Node's public zlib API. Every call has a ceiling on its output (what the rectangle
 * can hold), so a few compressed bytes cannot make us allocate more (a zip bomb): inflating
 * stops and throws as soon as the ceiling is passed.
 */
import zlib from 'node:zlib';
import { RfbProtocolError } from '../errors.js';

/** Deflate's back-reference window: the most history a share may refer to, bytes. */
const WINDOW_BYTES = 32 * 1024;
/** zlib header: CMF (method 8 = deflate, window ≤ 32 KiB), FLG (check bits, no dictionary). */
const ZLIB_HEADER_LENGTH = 2;
const CM_DEFLATE = 8;
const FDICT = 0x20;

export class InflateStream {
  /** the last ≤ 32 KiB of output; undefined until the header has been read */
  private window: Buffer | undefined;

  constructor(private readonly what: string) {}

  /** Forget the stream (Tight's reset bits): the next share starts with a zlib header. */
  reset(): void {
    this.window = undefined;
  }

  /**
   * Inflate the next share of the stream. Throws RfbProtocolError when the data is not
   * deflate, or would inflate to more than `maxOutput` bytes.
   */
  inflate(data: Buffer, maxOutput: number): Buffer {
    let body = data;
    let dictionary = this.window;
    if (dictionary === undefined) {
      checkHeader(data, this.what);
      body = data.subarray(ZLIB_HEADER_LENGTH);
      dictionary = Buffer.alloc(0);
    }
    let out: Buffer;
    try {
      out = zlib.inflateRawSync(body, {
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
        maxOutputLength: Math.max(1, maxOutput),
        ...(dictionary.length > 0 ? { dictionary } : {}),
      });
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new RfbProtocolError(
          'decompressed-too-large',
          `${this.what}: compressed data inflates to more than the ${maxOutput} bytes the rectangle can hold`,
        );
      }
      throw new RfbProtocolError(
        'bad-compressed-data',
        `${this.what}: compressed data is not valid deflate (${(err as Error).message})`,
      );
    }
    if (out.length > maxOutput) {
      throw new RfbProtocolError(
        'decompressed-too-large',
        `${this.what}: compressed data inflates to more than the ${maxOutput} bytes the rectangle can hold`,
      );
    }
    this.window = nextWindow(dictionary, out);
    return out;
  }
}

function checkHeader(data: Buffer, what: string): void {
  const cmf = data[0];
  const flg = data[1];
  if (
    cmf === undefined ||
    flg === undefined ||
    (cmf & 0x0f) !== CM_DEFLATE ||
    cmf >> 4 > 7 ||
    (cmf * 256 + flg) % 31 !== 0 ||
    (flg & FDICT) !== 0
  ) {
    throw new RfbProtocolError(
      'bad-compressed-data',
      `${what}: the stream does not start with a zlib header`,
    );
  }
}

/** The last WINDOW_BYTES of previous window + output, as a copy (output may be reused). */
function nextWindow(previous: Buffer, out: Buffer): Buffer {
  if (out.length >= WINDOW_BYTES) return Buffer.from(out.subarray(out.length - WINDOW_BYTES));
  const keep = Math.min(previous.length, WINDOW_BYTES - out.length);
  return Buffer.concat([previous.subarray(previous.length - keep), out]);
}
