import { EMPTY_BODY, type RectDecoderFactory } from './decoder.js';
import { assertFramebufferSize } from '../framebuffer-size.js';

/** DesktopSize pseudo-encoding: w, h are the new framebuffer size; no body. */
export const desktopSizeDecoder: RectDecoderFactory = (rect, ctx) => {
  assertFramebufferSize(rect.w, rect.h, ctx.limits, 'DesktopSize');
  ctx.resize(rect.w, rect.h);
  return EMPTY_BODY;
};
