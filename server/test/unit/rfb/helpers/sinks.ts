import type { FramebufferSink } from '../../../../src/rfb/types.js';

export type SinkCall =
  | { op: 'resize'; width: number; height: number }
  | { op: 'putPixels'; x: number; y: number; w: number; h: number; pixels: Buffer }
  | { op: 'copyRect'; srcX: number; srcY: number; x: number; y: number; w: number; h: number }
  | { op: 'setCursor'; hotX: number; hotY: number; w: number; h: number; rgba: Buffer }
  | { op: 'updateEnd' }
  | { op: 'serverCutText'; text: string }
  | { op: 'bell' };

/** Records every call, copying buffers (they are only valid during the call). */
export class RecordingSink implements FramebufferSink {
  readonly calls: SinkCall[] = [];

  resize(width: number, height: number): void {
    this.calls.push({ op: 'resize', width, height });
  }
  putPixels(x: number, y: number, w: number, h: number, pixels: Buffer): void {
    this.calls.push({ op: 'putPixels', x, y, w, h, pixels: Buffer.from(pixels) });
  }
  copyRect(srcX: number, srcY: number, x: number, y: number, w: number, h: number): void {
    this.calls.push({ op: 'copyRect', srcX, srcY, x, y, w, h });
  }
  setCursor(hotX: number, hotY: number, w: number, h: number, rgba: Buffer): void {
    this.calls.push({ op: 'setCursor', hotX, hotY, w, h, rgba: Buffer.from(rgba) });
  }
  updateEnd(): void {
    this.calls.push({ op: 'updateEnd' });
  }
  serverCutText(text: string): void {
    this.calls.push({ op: 'serverCutText', text });
  }
  bell(): void {
    this.calls.push({ op: 'bell' });
  }
}

/**
 * A tiny framebuffer (R, G, B, X per pixel) built from sink calls, with the damage of the
 * latest updates, for checking what a stream of updates amounts to.
 */
export class FramebufferModel implements FramebufferSink {
  width = 0;
  height = 0;
  data = Buffer.alloc(0);
  updates = 0;
  resizes = 0;
  cutTexts: string[] = [];
  cursor: { hotX: number; hotY: number; w: number; h: number; rgba: Buffer } | undefined;
  /** rectangles written (putPixels, copyRect destinations) since clearDamage() */
  damage: { x: number; y: number; w: number; h: number }[] = [];
  /** pixels ever written since the last resize, one flag per pixel */
  private covered = new Uint8Array(0);

  resize(width: number, height: number): void {
    this.width = width;
    this.height = height;
    this.data = Buffer.alloc(width * height * 4);
    this.covered = new Uint8Array(width * height);
    this.resizes++;
  }
  putPixels(x: number, y: number, w: number, h: number, pixels: Buffer): void {
    for (let row = 0; row < h; row++) {
      pixels.copy(this.data, ((y + row) * this.width + x) * 4, row * w * 4, (row + 1) * w * 4);
      this.covered.fill(1, (y + row) * this.width + x, (y + row) * this.width + x + w);
    }
    this.damage.push({ x, y, w, h });
  }
  copyRect(srcX: number, srcY: number, x: number, y: number, w: number, h: number): void {
    const copy = Buffer.alloc(w * h * 4);
    for (let row = 0; row < h; row++) {
      this.data.copy(
        copy,
        row * w * 4,
        ((srcY + row) * this.width + srcX) * 4,
        ((srcY + row) * this.width + srcX + w) * 4,
      );
    }
    this.putPixels(x, y, w, h, copy);
  }
  setCursor(hotX: number, hotY: number, w: number, h: number, rgba: Buffer): void {
    this.cursor = { hotX, hotY, w, h, rgba: Buffer.from(rgba) };
  }
  updateEnd(): void {
    this.updates++;
  }
  serverCutText(text: string): void {
    this.cutTexts.push(text);
  }

  pixel(x: number, y: number): [number, number, number] {
    const i = (y * this.width + x) * 4;
    return [this.data[i] as number, this.data[i + 1] as number, this.data[i + 2] as number];
  }
  /** every pixel has been written at least once since the last resize */
  fullyCovered(): boolean {
    return this.covered.length > 0 && this.covered.every((c) => c === 1);
  }
  clearDamage(): void {
    this.damage = [];
  }
  /** bounding box of the damage since clearDamage(), or undefined */
  damageBounds(): { x: number; y: number; w: number; h: number } | undefined {
    if (this.damage.length === 0) return undefined;
    const x0 = Math.min(...this.damage.map((d) => d.x));
    const y0 = Math.min(...this.damage.map((d) => d.y));
    const x1 = Math.max(...this.damage.map((d) => d.x + d.w));
    const y1 = Math.max(...this.damage.map((d) => d.y + d.h));
    return { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
  }
}
