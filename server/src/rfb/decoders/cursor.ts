import { BYTES_PER_PIXEL } from '../constants.js';
import { RfbProtocolError } from '../errors.js';
import type { ByteQueue } from '../byte-queue.js';
import type { RectHeader } from '../rect.js';
import type { DecodeContext, RectDecoder, RectDecoderFactory } from './decoder.js';

/**
 * Cursor pseudo-encoding: x, y are the hotspot, w, h the cursor size (not a framebuffer
 * area). Body: w*h pixels (R, G, B, X in our pixel format), then a 1-bit mask of
 * ceil(w/8) bytes a row, most significant bit leftmost. The sink gets RGBA with alpha
 * 0 or 255 from the mask; a 0-sized cursor means "hidden".
 */
export const cursorDecoder: RectDecoderFactory = (rect, ctx) => {
  const max = ctx.limits.maxCursor;
  if (rect.w > max || rect.h > max) {
    throw new RfbProtocolError(
      'cursor-too-large',
      `cursor ${rect.w}x${rect.h} is larger than the ${max}x${max} limit`,
    );
  }
  return new CursorDecoder(rect);
};

class CursorDecoder implements RectDecoder {
  private readonly pixelBytes: number;
  private readonly maskStride: number;

  constructor(private readonly rect: RectHeader) {
    this.pixelBytes = rect.w * rect.h * BYTES_PER_PIXEL;
    this.maskStride = Math.ceil(rect.w / 8);
  }

  decode(queue: ByteQueue, ctx: DecodeContext): boolean {
    const { w, h } = this.rect;
    const total = this.pixelBytes + this.maskStride * h;
    if (queue.available < total) return false;
    if (w === 0 || h === 0) {
      queue.skip(total); // always 0; kept so a w=0,h>0 rect stays well-formed
      ctx.sink.setCursor(0, 0, 0, 0, Buffer.alloc(0));
      return true;
    }
    const pixels = queue.read(this.pixelBytes);
    const mask = queue.read(this.maskStride * h);
    const rgba = Buffer.allocUnsafe(w * h * 4);
    for (let row = 0; row < h; row++) {
      for (let col = 0; col < w; col++) {
        const i = (row * w + col) * 4;
        const bit = ((mask[row * this.maskStride + (col >> 3)] as number) >> (7 - (col & 7))) & 1;
        rgba[i] = pixels[i] as number;
        rgba[i + 1] = pixels[i + 1] as number;
        rgba[i + 2] = pixels[i + 2] as number;
        rgba[i + 3] = bit ? 255 : 0;
      }
    }
    // Some servers put the hotspot on the far edge; a browser cursor needs it inside.
    const hotX = Math.min(this.rect.x, w - 1);
    const hotY = Math.min(this.rect.y, h - 1);
    ctx.sink.setCursor(hotX, hotY, w, h, rgba);
    return true;
  }
}
