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
