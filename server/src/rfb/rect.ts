import { RfbProtocolError, type RfbProtocolErrorCode } from './errors.js';

/** A FramebufferUpdate rectangle header: 4 × U16 and an S32 encoding. */
export interface RectHeader {
  x: number;
  y: number;
  w: number;
  h: number;
  encoding: number;
}

/** Bytes in a rectangle header on the wire. */
export const RECT_HEADER_LENGTH = 12;

/**
 * Throw unless the w×h rectangle at (x, y) lies inside a width×height framebuffer.
 * Written as subtractions against the bound so no sum can overflow even if these ever
 * become fixed-width integers (on the wire each is a U16).
 */
export function assertInFramebuffer(
  what: string,
  x: number,
  y: number,
  w: number,
  h: number,
  width: number,
  height: number,
  code: RfbProtocolErrorCode = 'rect-out-of-bounds',
): void {
  if (x > width || w > width - x || y > height || h > height - y) {
    throw new RfbProtocolError(
      code,
      `${what} ${w}x${h} at (${x},${y}) lies outside the ${width}x${height} framebuffer`,
    );
  }
}
