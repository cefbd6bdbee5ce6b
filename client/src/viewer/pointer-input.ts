/**
 * Mouse and pen → RFB pointer events (fingers: touch.ts). Moves are coalesced to one per animation
 * frame (the newest position); button changes and wheel clicks go out immediately.
 */
import { WheelAccumulator, rfbButtons, toFramebuffer } from './pointer';

export interface PointerPorts {
  send(x: number, y: number, buttons: number): boolean;
  enabled(): boolean;
  /** called on press, to focus the canvas */
  pressed?(): void;
}

export class PointerInput {
  private mask = 0;
  private pending: { clientX: number; clientY: number } | null = null;
  private frame = 0;
  private last = { x: -1, y: -1, mask: -1 };
  private readonly wheel = new WheelAccumulator();
  private readonly cleanup: Array<() => void> = [];

  constructor(
    private readonly canvas: HTMLCanvasElement,
    private readonly ports: PointerPorts,
  ) {
    this.listen('pointermove', (e) => this.onMove(e));
    this.listen('pointerdown', (e) => this.onButton(e, true));
    this.listen('pointerup', (e) => this.onButton(e, false));
    this.listen('pointercancel', (e) => this.onButton(e, false));
    this.listen('contextmenu', (e) => e.preventDefault());
    this.listen('wheel', (e) => this.onWheel(e), { passive: false });
  }

  /** Release held buttons (focus lost mid-drag), at the last position. */
  releaseButtons(): void {
    if (this.mask === 0) return;
    this.mask = 0;
    if (this.last.x >= 0) this.emit(this.last.x, this.last.y);
  }

  /** Forget state without sending (the connection is gone). */
  forget(): void {
    this.mask = 0;
    this.pending = null;
    this.last = { x: -1, y: -1, mask: -1 };
    this.wheel.reset();
  }

  dispose(): void {
    cancelAnimationFrame(this.frame);
    for (const off of this.cleanup) off();
    this.cleanup.length = 0;
  }

  private map(clientX: number, clientY: number): { x: number; y: number } {
    return toFramebuffer(
      clientX,
      clientY,
      this.canvas.getBoundingClientRect(),
      this.canvas.width,
      this.canvas.height,
    );
  }

  private onMove(e: PointerEvent): void {
    if (e.pointerType === 'touch' || !this.ports.enabled()) return; // touch.ts has fingers
    this.pending = { clientX: e.clientX, clientY: e.clientY };
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flushMove());
  }

  private flushMove(): void {
    this.frame = 0;
    const p = this.pending;
    this.pending = null;
    if (!p || !this.ports.enabled()) return;
    const { x, y } = this.map(p.clientX, p.clientY);
    if (x === this.last.x && y === this.last.y && this.mask === this.last.mask) return;
    this.emit(x, y);
  }

  private onButton(e: PointerEvent, down: boolean): void {
    if (e.pointerType === 'touch') return; // touch.ts has fingers
    if (down) this.ports.pressed?.();
    if (!this.ports.enabled()) return;
    e.preventDefault();
    if (down) this.canvas.setPointerCapture?.(e.pointerId);
    // `buttons` holds every button still down after this event (covers chorded presses)
    this.mask = e.type === 'pointercancel' ? 0 : rfbButtons(e.buttons);
    this.pending = null;
    const { x, y } = this.map(e.clientX, e.clientY);
    this.emit(x, y);
  }

  private onWheel(e: WheelEvent): void {
    e.preventDefault(); // the page must not scroll or zoom under the desktop
    if (!this.ports.enabled()) return;
    const clicks = this.wheel.add(e.deltaX, e.deltaY, e.deltaMode);
    if (clicks.length === 0) return;
    const { x, y } = this.map(e.clientX, e.clientY);
    for (const button of clicks) {
      this.ports.send(x, y, this.mask | button);
      this.ports.send(x, y, this.mask);
    }
    this.last = { x, y, mask: this.mask };
  }

  private emit(x: number, y: number): void {
    this.ports.send(x, y, this.mask);
    this.last = { x, y, mask: this.mask };
  }

  private listen<K extends keyof HTMLElementEventMap>(
    type: K,
    handler: (e: HTMLElementEventMap[K]) => void,
    options?: AddEventListenerOptions,
  ): void {
    const fn = handler as EventListener;
    this.canvas.addEventListener(type, fn, options);
    this.cleanup.push(() => this.canvas.removeEventListener(type, fn, options));
  }
}
