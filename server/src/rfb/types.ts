/**
 * What the RFB client drives. The stream's framebuffer mirror implements it; tests use a
 * recording sink. Pixel data is always 4 bytes per pixel in R, G, B, X order (the client
 * asks the server for that pixel format), rows packed (stride = w * 4). X is undefined.
 */
/** The bytes of pixel rows as they arrived, read in order into the sink's own memory. */
export interface RowSource {
  /** copy the next `bytes` bytes into `dst` at `at` */
  readInto(dst: Uint8Array, at: number, bytes: number): void;
}

export interface FramebufferSink {
  /** initial size, and every DesktopSize / ExtendedDesktopSize change */
  resize(width: number, height: number): void;
  /**
   * pixels of a Raw, ZRLE or Tight rectangle, maybe in bands of whole rows; `pixels` is only
   * valid during the call
   */
  putPixels(x: number, y: number, w: number, h: number, pixels: Buffer): void;
  /**
   * putPixels without the band in between: the sink takes the rows' bytes itself, in order
   * (w*4 bytes per row, each exactly once), from `rows`. A sink without it gets putPixels.
   */
  putRows?(x: number, y: number, w: number, h: number, rows: RowSource): void;
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
  /**
   * A ServerCutText longer than limits.maxCutText arrived: its bytes were skipped as they
   * came, never held, and the text is not delivered.
   */
  serverCutTextDropped?(length: number, limit: number): void;
  /**
   * The parser has consumed what arrived and waits for more bytes. A sink that defers work
   * (the stream coalesces resizes) does it here at the latest.
   */
  idle?(): void;
  bell?(): void;
}

export interface RfbLimits {
  /** widest framebuffer accepted from a server, pixels */
  maxWidth: number;
  /** tallest framebuffer accepted from a server, pixels */
  maxHeight: number;
  /** largest framebuffer area accepted from a server, pixels (the mirror costs 4 bytes each) */
  maxPixels: number;
  /** largest cursor side, pixels */
  maxCursor: number;
  /**
   * largest clipboard text in either direction, bytes: a longer ServerCutText is skipped
   * (not held, not delivered); a longer ClientCutText is cut
   */
  maxCutText: number;
  /** largest desktop name, bytes */
  maxNameLength: number;
  /**
   * most compressed bytes of one ZRLE rectangle, which is held whole before it is inflated
   * (Tight's are at most 4 MiB by its length field); a larger one closes the link
   */
  maxCompressedRect: number;
}

export const DEFAULT_RFB_LIMITS: RfbLimits = {
  maxWidth: 8192,
  maxHeight: 8192,
  // 16 Mpx: a 64 MiB mirror; two 4K monitors side by side (7680×2160) fit
  maxPixels: 4096 * 4096,
  maxCursor: 256,
  maxCutText: 1024 * 1024,
  maxNameLength: 4096,
  // a full 4K screen of noise in ZRLE raw tiles is ~25 MB; TigerVNC sends far smaller rects
  maxCompressedRect: 32 * 1024 * 1024,
};
