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
  if (width === 0 || height === 0) {
    throw new RfbProtocolError(
      'bad-framebuffer-size',
      `${what} announces a ${width}x${height} framebuffer, which has no pixels`,
    );
  }
  if (width > limits.maxWidth || height > limits.maxHeight || width * height > limits.maxPixels) {
    const allowed = `at most ${limits.maxWidth}x${limits.maxHeight} and ${megapixels(limits.maxPixels)} megapixels`;
    throw new RfbProtocolError(
      'framebuffer-too-large',
      `${what} announces a ${width}x${height} framebuffer; this pool accepts ${allowed}`,
      {
        viewerMessage: `the desktop's screen is ${width}×${height} (${megapixels(width * height)} megapixels); this pool allows ${allowed.replace('x', '×')}`,
      },
    );
  }
}

function megapixels(px: number): string {
  return (px / 1e6).toFixed(1);
}
