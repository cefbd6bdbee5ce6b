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
            // Same-canvas drawImage is defined for overlapping areas: the HTML drawing model
            // renders the source into a separate bitmap before compositing it, so the copy
            // reads the canvas as the previous rects left it (what CopyRect needs).
            ctx.drawImage(this.canvas, r.srcX, r.srcY, r.w, r.h, r.x, r.y, r.w, r.h);
            break;
          case 'image':
            ctx.drawImage(r.image, r.x, r.y, r.w, r.h);
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
