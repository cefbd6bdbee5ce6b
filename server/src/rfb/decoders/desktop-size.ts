import { RfbProtocolError } from '../errors.js';
import type { RfbLimits } from '../types.js';
import { EMPTY_BODY, type RectDecoderFactory } from './decoder.js';

/** DesktopSize pseudo-encoding: w, h are the new framebuffer size; no body. */
export const desktopSizeDecoder: RectDecoderFactory = (rect, ctx) => {
  assertFramebufferSize(rect.w, rect.h, ctx.limits, 'DesktopSize');
  ctx.resize(rect.w, rect.h);
  return EMPTY_BODY;
};

/** Throw unless width×height is a framebuffer size we accept (non-zero, within limits). */
export function assertFramebufferSize(
  width: number,
  height: number,
  limits: RfbLimits,
  what: string,
): void {
  const max = limits.maxDimension;
  if (width === 0 || height === 0 || width > max || height > max) {
    throw new RfbProtocolError(
      'bad-framebuffer-size',
      `${what} announces a ${width}x${height} framebuffer; accepted sizes are 1x1 to ${max}x${max}`,
    );
  }
}
