/**
 * Touch screens: tap = left click, long press = right click, one-finger drag = drag with
 * the left button, two-finger drag = scroll (wheel clicks), pinch = zoom the view (here, in
 * the browser: the desktop's size does not change). The gesture logic (TouchGestures) is
 * free of the DOM and takes the clock; TouchInput feeds it the canvas' touch events.
 */
import { browserClock, type Cancel, type Clock } from '../clock';
import { RfbButton } from './pointer';

/** Press this long without moving for a right click, ms. */
export const LONG_PRESS_MS = 600;
/** A finger that moves less than this is still a tap or a press, CSS px. */
export const TAP_SLOP_PX = 10;
/** Two-finger travel per wheel click, CSS px. */
export const SCROLL_STEP_PX = 30;
/** A change of the fingers' distance beyond this ratio makes two fingers a pinch. */
export const PINCH_THRESHOLD = 0.12;
export const MAX_ZOOM = 4;

export interface Point {
  x: number;
  y: number;
}

export interface GesturePorts {
  /** pointer at a CSS point with these RFB buttons held */
  pointer(at: Point, buttons: number): void;
  /** the view's zoom (1 = fitted) around a CSS point */
  zoom(scale: number, center: Point): void;
}

type State =
  | { kind: 'idle' }
  | { kind: 'one'; start: Point; at: Point; dragging: boolean; pressed: boolean }
  | {
      kind: 'two';
      mid: Point;
      startDist: number;
      startZoom: number;
      mode: 'undecided' | 'scroll' | 'pinch';
      carryY: number;
      carryX: number;
    }
  /** fingers still down after a gesture ended (a long press, two fingers): wait for none */
  | { kind: 'done' };

const dist = (a: Point, b: Point): number => Math.hypot(a.x - b.x, a.y - b.y);
const middle = (a: Point, b: Point): Point => ({ x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 });

export class TouchGestures {
  private state: State = { kind: 'idle' };
  private longPress: Cancel | undefined;
  private zoomValue = 1;

  constructor(
    private readonly ports: GesturePorts,
    private readonly clock: Clock = browserClock,
  ) {}

  get zoom(): number {
    return this.zoomValue;
  }

  /** The fingers on the screen now, after a touchstart, touchmove or touchend. */
  update(points: readonly Point[]): void {
    if (points.length === 0) return this.end();
    if (points.length >= 2) return this.two(points[0]!, points[1]!);
    const p = points[0]!;
    const s = this.state;
    if (s.kind === 'idle') {
      this.state = { kind: 'one', start: p, at: p, dragging: false, pressed: false };
      this.longPress = this.clock.after(LONG_PRESS_MS, () => this.onLongPress());
      return;
    }
    if (s.kind !== 'one') return;
    s.at = p;
    if (!s.dragging && dist(p, s.start) > TAP_SLOP_PX) {
      s.dragging = true;
      this.cancelLongPress();
      // a drag: the left button goes down where the finger started
      this.ports.pointer(s.start, RfbButton.Left);
      s.pressed = true;
    }
    if (s.dragging) this.ports.pointer(p, RfbButton.Left);
  }

  /** All fingers lifted. */
  private end(): void {
    const s = this.state;
    this.cancelLongPress();
    if (s.kind === 'one') {
      if (s.pressed) {
        this.ports.pointer(s.at, 0);
      } else {
        // a tap: a left click where the finger was
        this.ports.pointer(s.start, 0);
        this.ports.pointer(s.start, RfbButton.Left);
        this.ports.pointer(s.start, 0);
      }
    }
    this.state = { kind: 'idle' };
  }

  private onLongPress(): void {
    this.longPress = undefined;
    const s = this.state;
    if (s.kind !== 'one' || s.dragging) return;
    this.ports.pointer(s.start, 0);
    this.ports.pointer(s.start, RfbButton.Right);
    this.ports.pointer(s.start, 0);
    this.state = { kind: 'done' };
  }

  private two(a: Point, b: Point): void {
    const s = this.state;
    if (s.kind !== 'two') {
      this.cancelLongPress();
      // a one-finger drag that became two fingers lets go of its button first
      if (s.kind === 'one' && s.pressed) this.ports.pointer(s.at, 0);
      this.state = {
        kind: 'two',
        mid: middle(a, b),
        startDist: Math.max(1, dist(a, b)),
        startZoom: this.zoomValue,
        mode: 'undecided',
        carryX: 0,
        carryY: 0,
      };
      return;
    }
    const mid = middle(a, b);
    const ratio = dist(a, b) / s.startDist;
    if (s.mode === 'undecided') {
      if (Math.abs(ratio - 1) > PINCH_THRESHOLD) s.mode = 'pinch';
      else if (dist(mid, s.mid) > TAP_SLOP_PX) s.mode = 'scroll';
      else return;
    }
    if (s.mode === 'pinch') {
      this.zoomValue = Math.min(MAX_ZOOM, Math.max(1, s.startZoom * ratio));
      this.ports.zoom(this.zoomValue, mid);
      return;
    }
    // scroll: fingers moving up scroll the content down, as on a phone (wheel down)
    s.carryY += s.mid.y - mid.y;
    s.carryX += s.mid.x - mid.x;
    s.mid = mid;
    while (Math.abs(s.carryY) >= SCROLL_STEP_PX) {
      const button = s.carryY > 0 ? RfbButton.WheelDown : RfbButton.WheelUp;
      this.ports.pointer(mid, button);
      this.ports.pointer(mid, 0);
      s.carryY -= Math.sign(s.carryY) * SCROLL_STEP_PX;
    }
    while (Math.abs(s.carryX) >= SCROLL_STEP_PX) {
      const button = s.carryX > 0 ? RfbButton.WheelRight : RfbButton.WheelLeft;
      this.ports.pointer(mid, button);
      this.ports.pointer(mid, 0);
      s.carryX -= Math.sign(s.carryX) * SCROLL_STEP_PX;
    }
  }

  /** Touches were cancelled by the browser: let go of anything held. */
  cancel(): void {
    const s = this.state;
    this.cancelLongPress();
    if (s.kind === 'one' && s.pressed) this.ports.pointer(s.at, 0);
    this.state = { kind: 'idle' };
  }

  private cancelLongPress(): void {
    this.longPress?.();
    this.longPress = undefined;
  }
}

export interface TouchPorts {
  /** to the desktop, in framebuffer pixels */
  send(clientX: number, clientY: number, buttons: number): void;
  enabled(): boolean;
  /** the view's zoom changed (1 = none) */
  zoomed(scale: number, center: Point): void;
  /** a finger went down: focus the canvas */
  pressed?(): void;
}

/** The canvas' touch events into gestures; the page scrolls or zooms nothing itself. */
export class TouchInput {
  readonly gestures: TouchGestures;
  private readonly cleanup: Array<() => void> = [];

  constructor(
    private readonly canvas: HTMLElement,
    private readonly ports: TouchPorts,
    clock: Clock = browserClock,
  ) {
    this.gestures = new TouchGestures(
      {
        pointer: (at, buttons) => ports.send(at.x, at.y, buttons),
        zoom: (scale, center) => ports.zoomed(scale, center),
      },
      clock,
    );
    const onTouch = (e: TouchEvent): void => {
      if (!this.ports.enabled()) return;
      e.preventDefault();
      if (e.type === 'touchstart') this.ports.pressed?.();
      if (e.type === 'touchcancel') return this.gestures.cancel();
      this.gestures.update([...e.touches].map((t) => ({ x: t.clientX, y: t.clientY })));
    };
    for (const type of ['touchstart', 'touchmove', 'touchend', 'touchcancel'] as const) {
      this.canvas.addEventListener(type, onTouch, { passive: false });
      this.cleanup.push(() => this.canvas.removeEventListener(type, onTouch));
    }
  }

  dispose(): void {
    this.gestures.cancel();
    for (const off of this.cleanup) off();
    this.cleanup.length = 0;
  }
}
