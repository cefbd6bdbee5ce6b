/**
 * What the RFB client drives. The stream's framebuffer mirror implements it; tests use a
 * recording sink. Pixel data is always 4 bytes per pixel in R, G, B, X order (the client
 * asks the server for that pixel format), rows packed (stride = w * 4). X is undefined.
 */
export interface FramebufferSink {
  /** initial size, and every DesktopSize / ExtendedDesktopSize change */
  resize(width: number, height: number): void;
  /** a Raw rectangle; `pixels` is only valid during the call */
  putPixels(x: number, y: number, w: number, h: number, pixels: Buffer): void;
  /** CopyRect: copy w×h from (srcX, srcY) to (x, y) */
  copyRect(srcX: number, srcY: number, x: number, y: number, w: number, h: number): void;
  /**
   * Cursor pseudo-encoding: RGBA pixels (alpha 0 or 255 from the bitmask), or an empty
   * cursor (w = h = 0) when the server hides it.
   */
  setCursor(hotX: number, hotY: number, w: number, h: number, rgba: Buffer): void;
  /** a whole FramebufferUpdate message has been applied */
  updateEnd(): void;
  /** ServerCutText, decoded from Latin-1 */
  serverCutText(text: string): void;
  bell?(): void;
}

export interface RfbLimits {
  /** largest framebuffer side accepted from a server, pixels */
  maxDimension: number;
  /** largest cursor side, pixels */
  maxCursor: number;
  /** largest ServerCutText, bytes */
  maxCutText: number;
  /** largest desktop name, bytes */
  maxNameLength: number;
}

export const DEFAULT_RFB_LIMITS: RfbLimits = {
  maxDimension: 16384,
  maxCursor: 256,
  maxCutText: 10 * 1024 * 1024,
  maxNameLength: 4096,
};
