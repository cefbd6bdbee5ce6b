import type { FramebufferSink } from '../rfb/types.js';

/**
 * Where a second RFB link (to a desktop's destination during a live migration) draws until
 * the stream takes it over: a framebuffer of its own, so viewers see nothing of the
 * destination before the switch. Once adopted (DesktopStream.adoptFramebuffer), every call
 * goes straight to the stream instead.
 *
 * "An update ended" is not "the screen is here": a server answers a request for the whole
 * screen with updates that hold no pixels at all (QEMU sends the cursor shape and the LED
 * state at once, and the pixels at its next display refresh, which is also when it first
 * draws a migrated guest's screen), or a DesktopSize alone. So the sink tells apart the
 * updates whose rectangles cover the whole framebuffer (nextScreen).
 */
export class StagingSink implements FramebufferSink {
  width = 0;
  height = 0;
  fb: Buffer = Buffer.alloc(0);
  /** whole updates received so far */
  updates = 0;
  /** updates so far whose rectangles covered the whole framebuffer */
  screens = 0;
  private target: FramebufferSink | undefined;
  private screenWaiters: Array<() => void> = [];
  /** pixels drawn by the update under way (one byte each), and how many */
  private cover = new Uint8Array(0);
  private covered = 0;

  /**
   * resolves at the end of the next update that drew every pixel of the framebuffer (not
   * one already received): the server's whole screen as of that update
   */
  nextScreen(): Promise<void> {
    return new Promise((r) => this.screenWaiters.push(r));
  }

  /** from now on, pass everything to `sink` */
  forwardTo(sink: FramebufferSink): void {
    this.target = sink;
    this.cover = new Uint8Array(0);
    for (const w of this.screenWaiters.splice(0)) w();
  }

  private drew(x: number, y: number, w: number, h: number): void {
    const x0 = Math.max(0, x);
    const x1 = Math.min(this.width, x + w);
    const y1 = Math.min(this.height, y + h);
    for (let row = Math.max(0, y); row < y1; row++) {
      const base = row * this.width;
      for (let i = base + x0; i < base + x1; i++) {
        if (this.cover[i] === 0) {
          this.cover[i] = 1;
          this.covered++;
        }
      }
    }
  }

  resize(width: number, height: number): void {
    if (this.target) return this.target.resize(width, height);
    if (width === this.width && height === this.height) return;
    const old = this.fb;
    const oldW = this.width;
    const fb = Buffer.alloc(width * height * 4);
    const w = Math.min(width, oldW);
    for (let y = 0; y < Math.min(height, this.height); y++)
      old.copy(fb, y * width * 4, y * oldW * 4, y * oldW * 4 + w * 4);
    this.fb = fb;
    this.width = width;
    this.height = height;
    // what this update drew before the new size is not the new screen
    this.cover = new Uint8Array(width * height);
    this.covered = 0;
  }

  putPixels(x: number, y: number, w: number, h: number, pixels: Buffer): void {
    if (this.target) return this.target.putPixels(x, y, w, h, pixels);
    const rowBytes = w * 4;
    for (let row = 0; row < h; row++)
      pixels.copy(
        this.fb,
        ((y + row) * this.width + x) * 4,
        row * rowBytes,
        row * rowBytes + rowBytes,
      );
    this.drew(x, y, w, h);
  }

  copyRect(srcX: number, srcY: number, x: number, y: number, w: number, h: number): void {
    if (this.target) return this.target.copyRect(srcX, srcY, x, y, w, h);
    const stride = this.width * 4;
    const rows = [...Array(h).keys()];
    // overlapping moves: walk rows away from the destination
    for (const row of y > srcY ? rows.reverse() : rows)
      this.fb.copy(
        this.fb,
        (y + row) * stride + x * 4,
        (srcY + row) * stride + srcX * 4,
        (srcY + row) * stride + (srcX + w) * 4,
      );
    this.drew(x, y, w, h);
  }

  setCursor(hotX: number, hotY: number, w: number, h: number, rgba: Buffer): void {
    // the source's cursor stays until the switch; the destination's comes with its next one
    this.target?.setCursor(hotX, hotY, w, h, rgba);
  }

  updateEnd(): void {
    if (this.target) return this.target.updateEnd();
    this.updates++;
    const whole = this.width > 0 && this.covered === this.width * this.height;
    if (this.covered > 0) {
      this.cover.fill(0);
      this.covered = 0;
    }
    if (!whole) return;
    this.screens++;
    for (const w of this.screenWaiters.splice(0)) w();
  }

  serverCutText(text: string): void {
    this.target?.serverCutText(text);
  }

  serverCutTextDropped(length: number, limit: number): void {
    this.target?.serverCutTextDropped?.(length, limit);
  }

  idle(): void {
    this.target?.idle?.();
  }
}
