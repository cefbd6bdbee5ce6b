/**
 * The framebuffer's size and screen layout as a server announces them (ServerInit,
 * DesktopSize, ExtendedDesktopSize), and the check every announced size must pass.
 */
import { RfbProtocolError } from './errors.js';
import type { RfbLimits } from './types.js';

/** One screen (monitor) of the server's layout: a viewport into the framebuffer. */
export interface Screen {
  id: number;
  x: number;
  y: number;
  width: number;
  height: number;
  /** unused by the spec; preserved when sent back */
  flags: number;
}

export type DesktopSizeReasonName = 'server' | 'this-client' | 'other-client';
export type DesktopSizeStatusName =
  'ok' | 'prohibited' | 'out-of-resources' | 'invalid-layout' | 'unknown-error';

/** An ExtendedDesktopSize rectangle, decoded. */
export interface ExtendedDesktopSizeEvent {
  reason: DesktopSizeReasonName;
  status: DesktopSizeStatusName;
  /**
   * false for a refused SetDesktopSize of ours: the spec leaves size and layout undefined
   * then, so they are reported as received and not applied.
   */
  applied: boolean;
  width: number;
  height: number;
  screens: Screen[];
}

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

/**
 * May we ask a server for a width×height framebuffer (SetDesktopSize)? Only for a size we
 * would accept when it applies it: whole, non-zero, within the limits and the wire's U16.
 */
export function canRequestFramebufferSize(
  width: number,
  height: number,
  limits: RfbLimits,
): boolean {
  return (
    Number.isInteger(width) &&
    Number.isInteger(height) &&
    width >= 1 &&
    height >= 1 &&
    width <= Math.min(limits.maxWidth, 0xffff) &&
    height <= Math.min(limits.maxHeight, 0xffff) &&
    width * height <= limits.maxPixels
  );
}

function megapixels(px: number): string {
  return (px / 1e6).toFixed(1);
}
