import { BYTES_PER_PIXEL } from '../constants.js';
import type { ByteQueue } from '../byte-queue.js';
import { assertInFramebuffer, type RectHeader } from '../rect.js';
import {
  EMPTY_BODY,
  type DecodeContext,
  type RectDecoder,
  type RectDecoderFactory,
} from './decoder.js';

/**
 * Raw rectangles reach the sink in bands of whole rows of about this many bytes (at least
 * one row), as soon as a band has arrived. A full-screen rect is never held whole, and
 * the bands are fixed by the rect's width alone, so the sink sees the same calls
 * however the stream was split.
 */
export const RAW_BAND_BYTES = 64 * 1024;

export const rawDecoder: RectDecoderFactory = (rect, ctx) => {
  assertInFramebuffer('Raw rectangle', rect.x, rect.y, rect.w, rect.h, ctx.width, ctx.height);
  if (rect.w === 0 || rect.h === 0) return EMPTY_BODY;
  return new RawDecoder(rect);
};

class RawDecoder implements RectDecoder {
  private rowsDone = 0;
  private readonly rowBytes: number;
  private readonly bandRows: number;

  constructor(private readonly rect: RectHeader) {
    this.rowBytes = rect.w * BYTES_PER_PIXEL;
    this.bandRows = Math.max(1, Math.floor(RAW_BAND_BYTES / this.rowBytes));
  }

  decode(queue: ByteQueue, ctx: DecodeContext): boolean {
    const { x, y, w, h } = this.rect;
    while (this.rowsDone < h) {
      const rows = Math.min(this.bandRows, h - this.rowsDone);
      const bytes = rows * this.rowBytes;
      if (queue.available < bytes) return false;
      const { sink } = ctx;
      if (sink.putRows) {
        const before = queue.available;
        sink.putRows(x, y + this.rowsDone, w, rows, queue);
        if (before - queue.available !== bytes)
          throw new Error(`a sink took ${before - queue.available} of a band's ${bytes} bytes`);
      } else sink.putPixels(x, y + this.rowsDone, w, rows, queue.read(bytes));
      this.rowsDone += rows;
    }
    return true;
  }
}
