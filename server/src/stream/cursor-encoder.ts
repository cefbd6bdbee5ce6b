import sharp from 'sharp';
import type { Logger } from 'pino';

/** A desktop's cursor as the browser draws it (a CSS cursor): its image and hot spot. */
export interface CursorShape {
  width: number;
  height: number;
  hotX: number;
  hotY: number;
  /** PNG of the shape; empty when the cursor is hidden */
  png: Buffer;
}

/**
 * Turns the RFB Cursor pseudo-encoding's pixels into a PNG, off the event loop. Shapes can
 * arrive faster than they encode (a busy cursor animating): only the newest is announced, and
 * it stays as `current` for viewers that attach later.
 */
export class CursorEncoder {
  current: CursorShape | undefined;
  /** bumped per shape, so an older encode finishing late is dropped */
  private seq = 0;

  constructor(
    private readonly log: Logger,
    private readonly announce: (shape: CursorShape) => void,
  ) {}

  /** `rgba` is w×h RGBA pixels (alpha from the RFB mask) */
  set(hotX: number, hotY: number, w: number, h: number, rgba: Buffer): void {
    const seq = ++this.seq;
    const done = (png: Buffer) => {
      if (seq !== this.seq) return; // a newer shape arrived while encoding
      this.current = { width: w, height: h, hotX, hotY, png };
      this.announce(this.current);
    };
    if (w === 0 || h === 0) {
      done(Buffer.alloc(0));
      return;
    }
    sharp(Buffer.from(rgba), { raw: { width: w, height: h, channels: 4 } })
      .png()
      .toBuffer()
      .then(done, (e: unknown) => this.log.warn({ err: e }, 'cursor encode failed'));
  }
}
