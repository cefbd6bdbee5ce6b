import type { FramebufferSink } from '../rfb/types.js';

/**
 * Where a second RFB link (to a desktop's destination during a live migration) draws until
 * the stream takes it over: a framebuffer of its own, so viewers see nothing of the
 * destination before the switch. Once adopted (DesktopStream.adoptLink), every call goes
 * straight to the stream instead.
 */
export class StagingSink implements FramebufferSink {
  width = 0;
  height = 0;
  fb: Buffer = Buffer.alloc(0);
  /** whole updates received so far */
  updates = 0;
  private target: FramebufferSink | undefined;
  private waiters: Array<() => void> = [];

  /** resolves at the end of the next whole update (not one already received) */
  nextUpdate(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }

  /** from now on, pass everything to `sink` */
  forwardTo(sink: FramebufferSink): void {
    this.target = sink;
    for (const w of this.waiters.splice(0)) w();
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
  }

  setCursor(hotX: number, hotY: number, w: number, h: number, rgba: Buffer): void {
    // the source's cursor stays until the switch; the destination's comes with its next one
    this.target?.setCursor(hotX, hotY, w, h, rgba);
  }

  updateEnd(): void {
    if (this.target) return this.target.updateEnd();
    this.updates++;
    for (const w of this.waiters.splice(0)) w();
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
