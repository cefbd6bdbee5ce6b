/** Paints decoded frames onto the screen canvas, rect by rect, in order. */
import type { DecodedFrame } from './rect-decoder';
import { releaseFrame } from './rect-decoder';

export class CanvasPainter {
  private readonly ctx: CanvasRenderingContext2D;

  constructor(readonly canvas: HTMLCanvasElement) {
    // alpha:false: the desktop is opaque; lets the browser skip blending with the page
    const ctx = canvas.getContext('2d', { alpha: false });
    if (!ctx) throw new Error('2D canvas is not available');
    this.ctx = ctx;
    this.ctx.imageSmoothingEnabled = false;
  }

  get width(): number {
    return this.canvas.width;
  }

  get height(): number {
    return this.canvas.height;
  }

  /** Resize the framebuffer (clears it; the server follows a resize with a keyframe). */
  resize(width: number, height: number): boolean {
    if (width === this.canvas.width && height === this.canvas.height) return false;
    this.canvas.width = width;
    this.canvas.height = height;
    this.ctx.imageSmoothingEnabled = false;
    return true;
  }

  private scratch:
    | {
        canvas: OffscreenCanvas | HTMLCanvasElement;
        ctx: OffscreenCanvasRenderingContext2D | CanvasRenderingContext2D;
      }
    | undefined;

  /**
   * Copy a region of the screen canvas onto itself. A same-canvas drawImage is correct for
   * overlapping areas but costs 4–6 ms in Chromium whatever the size (it snapshots the whole
   * canvas); going through a scratch canvas costs a fraction of a millisecond.
   */
  private copy(srcX: number, srcY: number, x: number, y: number, w: number, h: number): void {
    let s = this.scratch;
    if (!s || s.canvas.width < w || s.canvas.height < h) {
      const cw = Math.max(w, s?.canvas.width ?? 0);
      const ch = Math.max(h, s?.canvas.height ?? 0);
      const canvas =
        typeof OffscreenCanvas === 'function'
          ? new OffscreenCanvas(cw, ch)
          : Object.assign(document.createElement('canvas'), { width: cw, height: ch });
      const ctx = canvas.getContext('2d');
      if (!ctx) throw new Error('2D canvas is not available');
      ctx.imageSmoothingEnabled = false;
      // 'copy': the scratch pixels are replaced, not blended with what was there
      ctx.globalCompositeOperation = 'copy';
      s = this.scratch = { canvas, ctx };
    }
    s.ctx.drawImage(this.canvas, srcX, srcY, w, h, 0, 0, w, h);
    this.ctx.drawImage(s.canvas, 0, 0, w, h, x, y, w, h);
  }

  /** Draw every rect of the frame in order. Returns the number of rects that failed. */
  paint(frame: DecodedFrame): number {
    this.resize(frame.fbWidth, frame.fbHeight);
    const ctx = this.ctx;
    let failed = 0;
    try {
      for (const r of frame.rects) {
        switch (r.kind) {
          case 'fill':
            if (!r.opaque) ctx.clearRect(r.x, r.y, r.w, r.h);
            ctx.fillStyle = r.color;
            ctx.fillRect(r.x, r.y, r.w, r.h);
            break;
          case 'copy':
            this.copy(r.srcX, r.srcY, r.x, r.y, r.w, r.h);
            break;
          case 'image':
            ctx.drawImage(r.image, r.x, r.y, r.w, r.h);
            break;
          case 'video':
            if (r.frame.displayWidth !== r.w || r.frame.displayHeight !== r.h) {
              // a big region comes at half size: scale it up smoothly (until its lossless refresh)
              ctx.imageSmoothingEnabled = true;
              ctx.drawImage(r.frame, r.x, r.y, r.w, r.h);
              ctx.imageSmoothingEnabled = false;
            } else ctx.drawImage(r.frame, r.x, r.y, r.w, r.h);
            break;
          case 'skipped':
            break;
          case 'pixels':
            ctx.putImageData(new ImageData(r.rgba, r.w, r.h), r.x, r.y);
            break;
          case 'failed':
            failed++;
            break;
        }
      }
    } finally {
      releaseFrame(frame);
    }
    return failed;
  }
}
