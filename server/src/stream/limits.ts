import { DesktopLimits } from '@vdi/shared';
import { DEFAULT_RFB_LIMITS, type RfbLimits } from '../rfb/types.js';

/** The server's defaults for what a desktop may send (config.desktopLimits). */
export interface DesktopLimitDefaults {
  clipboardMaxBytes: number;
  maxFramebuffer: { width: number; height: number; pixels: number };
}

export const DEFAULT_DESKTOP_LIMITS: DesktopLimitDefaults = {
  clipboardMaxBytes: DEFAULT_RFB_LIMITS.maxCutText,
  maxFramebuffer: {
    width: DEFAULT_RFB_LIMITS.maxWidth,
    height: DEFAULT_RFB_LIMITS.maxHeight,
    pixels: DEFAULT_RFB_LIMITS.maxPixels,
  },
};

/**
 * The RFB limits of a pool's desktops: the pool template's fields where set, else the
 * server's defaults. `template` is the pool's stored template (JSON); one that does not parse
 * gets the defaults.
 */
export function poolRfbLimits(
  template: Record<string, unknown>,
  defaults: DesktopLimitDefaults = DEFAULT_DESKTOP_LIMITS,
): RfbLimits {
  const parsed = DesktopLimits.safeParse(template);
  const pool = parsed.success ? parsed.data : {};
  const fb = pool.maxFramebuffer;
  return {
    ...DEFAULT_RFB_LIMITS,
    maxCutText: pool.clipboardMaxBytes ?? defaults.clipboardMaxBytes,
    maxWidth: fb?.width ?? defaults.maxFramebuffer.width,
    maxHeight: fb?.height ?? defaults.maxFramebuffer.height,
    maxPixels: fb ? (fb.pixels ?? fb.width * fb.height) : defaults.maxFramebuffer.pixels,
  };
}

/** The sizes a viewer may resize a desktop to (see DesktopLimitFields.resizeRange). */
export interface ResizeRange {
  minWidth: number;
  minHeight: number;
  maxWidth: number;
  maxHeight: number;
  /** the pool set its range: its viewers fit the desktop to the window unless told otherwise */
  fitByDefault: boolean;
}

/** Smallest size "fit to window" asks for when the pool does not say: below it apps break. */
const DEFAULT_MIN_SIZE = { width: 640, height: 480 } as const;

/**
 * The pool's resize range, never beyond what the gateway accepts from the desktop (`limits`):
 * a desktop resized past its pool's maxFramebuffer would be refused the moment it applied it.
 */
export function poolResizeRange(template: Record<string, unknown>, limits: RfbLimits): ResizeRange {
  const parsed = DesktopLimits.safeParse(template);
  const r = parsed.success ? parsed.data.resizeRange : undefined;
  const maxWidth = Math.min(r?.maxWidth ?? limits.maxWidth, limits.maxWidth);
  const maxHeight = Math.min(r?.maxHeight ?? limits.maxHeight, limits.maxHeight);
  return {
    minWidth: Math.min(r?.minWidth ?? DEFAULT_MIN_SIZE.width, maxWidth),
    minHeight: Math.min(r?.minHeight ?? DEFAULT_MIN_SIZE.height, maxHeight),
    maxWidth,
    maxHeight,
    fitByDefault: r !== undefined,
  };
}

/**
 * A requested size clamped into the range and under the area limit (the aspect ratio is
 * kept when the area has to shrink). Whole pixels; widths even, which some servers need.
 */
export function clampSize(
  width: number,
  height: number,
  range: ResizeRange,
  maxPixels: number,
): { width: number; height: number } {
  let w = Math.min(Math.max(Math.round(width), range.minWidth), range.maxWidth);
  let h = Math.min(Math.max(Math.round(height), range.minHeight), range.maxHeight);
  if (w * h > maxPixels) {
    const k = Math.sqrt(maxPixels / (w * h));
    w = Math.max(range.minWidth, Math.floor(w * k));
    h = Math.max(range.minHeight, Math.floor(h * k));
  }
  if (w % 2 === 1 && w - 1 >= range.minWidth) w -= 1;
  return { width: w, height: h };
}
