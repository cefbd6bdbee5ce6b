/**
 * Pointer arithmetic, free of the DOM: CSS coordinates → framebuffer pixels, DOM button
 * bits → RFB button mask, wheel deltas → wheel "clicks".
 */

/** RFB PointerEvent button-mask bits (RFC 6143 §7.5.5 and the usual wheel convention). */
export const RfbButton = {
  Left: 1 << 0,
  Middle: 1 << 1,
  Right: 1 << 2,
  WheelUp: 1 << 3,
  WheelDown: 1 << 4,
  WheelLeft: 1 << 5,
  WheelRight: 1 << 6,
} as const;

/** DOM MouseEvent.buttons bits. */
const DomButton = { Primary: 1, Secondary: 2, Auxiliary: 4 } as const;

export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/**
 * Map a point in CSS pixels (clientX/Y) on the displayed canvas `box` to a framebuffer
 * pixel, clamped to the framebuffer (a captured pointer can leave the canvas).
 */
export function toFramebuffer(
  clientX: number,
  clientY: number,
  box: Box,
  fbWidth: number,
  fbHeight: number,
): { x: number; y: number } {
  if (box.width <= 0 || box.height <= 0 || fbWidth <= 0 || fbHeight <= 0) return { x: 0, y: 0 };
  const x = Math.floor(((clientX - box.left) * fbWidth) / box.width);
  const y = Math.floor(((clientY - box.top) * fbHeight) / box.height);
  return { x: clamp(x, 0, fbWidth - 1), y: clamp(y, 0, fbHeight - 1) };
}

/** DOM `buttons` (1 primary, 2 secondary, 4 middle) → RFB mask (1 left, 2 middle, 4 right). */
export function rfbButtons(domButtons: number): number {
  let mask = 0;
  if (domButtons & DomButton.Primary) mask |= RfbButton.Left;
  if (domButtons & DomButton.Auxiliary) mask |= RfbButton.Middle;
  if (domButtons & DomButton.Secondary) mask |= RfbButton.Right;
  return mask;
}

/** Size of the box that shows a fbWidth×fbHeight framebuffer in an area, keeping its aspect ratio. */
export function fitSize(
  fbWidth: number,
  fbHeight: number,
  areaWidth: number,
  areaHeight: number,
): { width: number; height: number } {
  if (fbWidth <= 0 || fbHeight <= 0 || areaWidth <= 0 || areaHeight <= 0)
    return { width: 0, height: 0 };
  const scale = Math.min(areaWidth / fbWidth, areaHeight / fbHeight);
  return { width: Math.floor(fbWidth * scale), height: Math.floor(fbHeight * scale) };
}

/** WheelEvent.deltaMode */
export const DeltaMode = { Pixel: 0, Line: 1, Page: 2 } as const;

/** Scroll distance of one wheel click, in CSS pixels (a "line"; Chrome sends 100 px per notch). */
export const PIXELS_PER_CLICK = 50;
/** A "page" of scrolling, in clicks. */
export const CLICKS_PER_PAGE = 10;
/** Upper bound of clicks sent for one wheel event, so a fling cannot flood the desktop. */
export const MAX_CLICKS_PER_EVENT = 10;

/**
 * Turns wheel deltas into RFB wheel clicks: accumulates fractional movement (touchpads send
 * many small deltas) and emits one click per line. Reversing direction drops the remainder.
 */
export class WheelAccumulator {
  private x = 0;
  private y = 0;

  /** The wheel buttons to press and release, in order (one entry per click). */
  add(deltaX: number, deltaY: number, deltaMode: number): number[] {
    const unit =
      deltaMode === DeltaMode.Line
        ? PIXELS_PER_CLICK
        : deltaMode === DeltaMode.Page
          ? PIXELS_PER_CLICK * CLICKS_PER_PAGE
          : 1;
    const clicks: number[] = [];
    this.y = accumulate(this.y, deltaY * unit);
    this.x = accumulate(this.x, deltaX * unit);
    this.y = drain(this.y, RfbButton.WheelUp, RfbButton.WheelDown, clicks);
    this.x = drain(this.x, RfbButton.WheelLeft, RfbButton.WheelRight, clicks);
    return clicks;
  }

  reset(): void {
    this.x = 0;
    this.y = 0;
  }
}

function accumulate(total: number, delta: number): number {
  if (delta === 0 || !Number.isFinite(delta)) return total;
  // a change of direction starts over instead of first paying back the old remainder
  if (Math.sign(total) !== 0 && Math.sign(total) !== Math.sign(delta)) return delta;
  return total + delta;
}

function drain(total: number, negative: number, positive: number, out: number[]): number {
  let n = Math.trunc(total / PIXELS_PER_CLICK);
  if (n === 0) return total;
  const rest = total - n * PIXELS_PER_CLICK;
  n = clamp(n, -MAX_CLICKS_PER_EVENT, MAX_CLICKS_PER_EVENT);
  const button = n < 0 ? negative : positive;
  for (let i = 0; i < Math.abs(n); i++) out.push(button);
  return rest;
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
