import type { CopyOp, Rect } from './dirty-grid.js';

/** Animated rects above this many pixels are encoded as several bands in parallel. */
const BAND_PIXELS = 256 * 1024;
/** Band heights are multiples of the JPEG block row (16 px with 4:2:0), so seams stay clean. */
const BAND_ALIGN = 16;

/** One rectangle to encode, and whether it may go lossy. */
export interface EncodeJob extends Rect {
  allowLossy: boolean;
}

/** What one frame will carry, before any pixel is encoded. */
export interface FramePlan {
  /** applied first, in order: the client copies on its canvas as it was before this frame */
  copies: CopyOp[];
  /** the damaged pixels, in the order their rects go into the frame */
  jobs: EncodeJob[];
}

/**
 * Plan a frame (the planner half of what guacd calls a frame; the encoder and the frame
 * layout are separate): the pending copies, then each damaged rect. Animated rects (`isHot`)
 * may go lossy and, when large, are cut into bands that encode in parallel on the libuv pool
 * (one sharp call uses one core), which roughly halves a full-screen frame's latency on two
 * cores. Quiet rects stay whole and lossless.
 */
export function planFrame(
  copies: CopyOp[],
  damage: Rect[],
  isHot: (r: Rect) => boolean,
): FramePlan {
  const jobs: EncodeJob[] = [];
  for (const r of damage) {
    const allowLossy = isHot(r);
    for (const b of allowLossy ? bands(r) : [r]) jobs.push({ ...b, allowLossy });
  }
  return { copies, jobs };
}

function bands(r: Rect): Rect[] {
  const n = Math.ceil((r.w * r.h) / BAND_PIXELS);
  if (n <= 1) return [r];
  const step = Math.max(BAND_ALIGN, Math.ceil(r.h / n / BAND_ALIGN) * BAND_ALIGN);
  const out: Rect[] = [];
  for (let y = 0; y < r.h; y += step)
    out.push({ x: r.x, y: r.y + y, w: r.w, h: Math.min(step, r.h - y) });
  return out;
}
