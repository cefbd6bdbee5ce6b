import { assertInFramebuffer, type RectHeader } from '../rect.js';
import type { ByteQueue } from '../byte-queue.js';
import type { DecodeContext, RectDecoder, RectDecoderFactory } from './decoder.js';

/** CopyRect body: U16 src-x, U16 src-y. */
const BODY_LENGTH = 4;

export const copyRectDecoder: RectDecoderFactory = (rect, ctx) => {
  assertInFramebuffer(
    'CopyRect destination',
    rect.x,
    rect.y,
    rect.w,
    rect.h,
    ctx.width,
    ctx.height,
  );
  return new CopyRectDecoder(rect);
};

class CopyRectDecoder implements RectDecoder {
  constructor(private readonly rect: RectHeader) {}

  decode(queue: ByteQueue, ctx: DecodeContext): boolean {
    if (queue.available < BODY_LENGTH) return false;
    const srcX = queue.readU16();
    const srcY = queue.readU16();
    const { x, y, w, h } = this.rect;
    assertInFramebuffer(
      'CopyRect source',
      srcX,
      srcY,
      w,
      h,
      ctx.width,
      ctx.height,
      'copy-source-out-of-bounds',
    );
    if (w > 0 && h > 0) ctx.sink.copyRect(srcX, srcY, x, y, w, h);
    return true;
  }
}
