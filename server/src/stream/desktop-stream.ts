import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { RfbProtocolError } from '../rfb/errors.js';
import type { FramebufferSink, RowSource } from '../rfb/types.js';
import type { Rect } from './dirty-grid.js';
import { Viewer, type MirrorView, type ViewerOptions } from './viewer.js';
import { MoveDetector } from './move-detector.js';
import { HeatMap, type HotCells } from './heat-map.js';
import { CursorEncoder, type CursorShape } from './cursor-encoder.js';
import { encodeThumbnail } from './thumbnail.js';
import { realTimer, type SetTimer } from './timer.js';

/** The input half of the RFB connection that fills a stream; implemented by rfb/client.ts. */
export interface RfbLink {
  /** each returns false when the input was not sent (the desktop does not read) */
  keyEvent(keysym: number, down: boolean): boolean;
  pointerEvent(x: number, y: number, buttons: number): boolean;
  clientCutText(text: string): boolean;
  /** false also when the desktop cannot be resized, or not to that size */
  setDesktopSize(width: number, height: number): boolean;
  /** the desktop has said it can be resized (ExtendedDesktopSize) and has not refused yet */
  readonly canResize: boolean;
}

/** Input from a viewer, on its way to the desktop. */
export type DesktopInput =
  | { kind: 'key'; keysym: number; down: boolean }
  | { kind: 'pointer'; x: number; y: number; buttons: number }
  | { kind: 'clipboard'; text: string }
  | { kind: 'resize'; width: number; height: number };

export interface StreamEvents {
  cursor(shape: CursorShape): void;
  clipboard(text: string): void;
  /** the desktop's clipboard held more than the pool allows; it was not passed on */
  clipboardDropped?(length: number, limit: number): void;
}

/**
 * Framebuffer reallocations (each costs O(area)) a desktop may cause in a burst, and per
 * second after it. Resizes are coalesced first (see resize()), so only a server that
 * alternates sizes with pixels in between spends these; a real desktop needs a few.
 */
const RESIZE_BURST = 20;
const RESIZES_PER_SEC = 5;
/** input held while a desktop moves (decision 13): about 8 seconds of fast typing and more */
const HELD_INPUT_BYTES = 256 * 1024;
/** between two held keys sent after a move, ms (see releaseInput) */
const KEY_PACE_MS = 15;
/** side of the squares compared when a moved desktop's framebuffer is taken over, pixels */
const ADOPT_TILE = 16;

/** roughly what an input event costs held: its RFB message, or the text */
function inputBytes(ev: DesktopInput): number {
  return ev.kind === 'clipboard' ? 8 + ev.text.length : 16;
}

/**
 * One framebuffer mirror per desktop (docs/architecture.md, decision 4): the RFB client writes
 * into it, every viewer of the desktop reads from it. Its heat map (how often each cell
 * changes) tells viewers which regions may go lossy.
 */
export class DesktopStream implements FramebufferSink, MirrorView {
  width = 0;
  height = 0;
  fb: Buffer = Buffer.alloc(0);
  private readonly heat: HeatMap;
  /** the rows of a rect told so far, whose heat is not yet told (see heatBand) */
  private band: Rect | undefined;
  private readonly cursorEncoder: CursorEncoder;
  private readonly attached = new Set<Viewer>();
  private link: RfbLink | undefined;
  private moves: MoveDetector | undefined;
  /** resolves when the first full framebuffer has arrived */
  private firstUpdate: Promise<void>;
  private resolveFirst!: () => void;
  updates = 0;
  /** a size announced by the server and not yet applied to the mirror */
  private pendingSize: { width: number; height: number } | undefined;
  private resizeBudget = { tokens: RESIZE_BURST, at: 0 };
  /** mirror reallocations so far (resizes applied, after coalescing) */
  reallocations = 0;
  /** input held while the desktop moves (holdInput), and its size in bytes */
  private held: DesktopInput[] | undefined;
  private heldBytes = 0;
  /** held input is being sent out, paced */
  private releasing = false;
  /** the last pointer event sent to the desktop */
  private lastPointer: { x: number; y: number; buttons: number } | undefined;

  constructor(
    readonly desktopId: string,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly events: StreamEvents,
  ) {
    this.firstUpdate = new Promise((r) => (this.resolveFirst = r));
    this.heat = new HeatMap(clock);
    this.cursorEncoder = new CursorEncoder(log, (shape) => events.cursor(shape));
  }

  /** the desktop's current cursor shape, once it has sent one */
  get cursor(): CursorShape | undefined {
    return this.cursorEncoder.current;
  }

  whenFirstUpdate(): Promise<void> {
    return this.firstUpdate;
  }

  /** the RFB connection is up: input goes to it from now on */
  connected(link: RfbLink): void {
    this.link = link;
  }

  // ---- viewers and their input ----

  /** can viewers resize this desktop (SetDesktopSize)? False before the link is up. */
  get canResize(): boolean {
    return this.link?.canResize ?? false;
  }

  /** the viewers reading this mirror */
  get viewers(): ReadonlySet<Viewer> {
    return this.attached;
  }

  /** A new viewer of this desktop; its first frame is a keyframe. Let it go with detach(). */
  attach(opts: ViewerOptions): Viewer {
    const viewer = new Viewer(this, this.clock, opts);
    this.attached.add(viewer);
    return viewer;
  }

  detach(viewer: Viewer): void {
    viewer.close();
    this.attached.delete(viewer);
  }

  /**
   * Pass a viewer's input to the desktop. False when it was not sent: no connection yet, the
   * desktop is not reading (its send buffer is full), or it refused a resize.
   */
  input(ev: DesktopInput): boolean {
    if (this.held) return this.hold(ev);
    return this.send(ev);
  }

  /**
   * The desktop is about to pause for a move (a paused VM drops input): keep viewers' input,
   * in order and bounded in bytes, until releaseInput() sends it to whichever link is current.
   */
  holdInput(): void {
    this.held ??= [];
  }

  /**
   * Send the held input to the current link, paced: a VM's PS/2 keyboard holds a few
   * scancodes only, so a burst of held keys would overflow it and lose some. Keys go one per
   * KEY_PACE_MS (pointer and clipboard at once, in order); input arriving meanwhile queues
   * behind. Returns how many events were held.
   */
  releaseInput(setTimer: SetTimer = realTimer): number {
    const held = this.held;
    if (!held || this.releasing) return 0;
    const n = held.length;
    this.releasing = true;
    const pump = () => {
      while (this.held && this.held.length > 0) {
        const ev = this.held.shift()!;
        this.heldBytes -= inputBytes(ev);
        if (!this.send(ev)) this.log.warn({ event: ev.kind }, 'held input refused by the desktop');
        if (ev.kind === 'key') {
          setTimer(pump, KEY_PACE_MS);
          return;
        }
      }
      this.held = undefined;
      this.heldBytes = 0;
      this.releasing = false;
    };
    pump();
    return n;
  }

  private hold(ev: DesktopInput): boolean {
    const held = this.held!;
    const last = held.at(-1);
    // a pointer that only moved replaces the move before it: where it ends is what counts
    if (ev.kind === 'pointer' && last?.kind === 'pointer' && last.buttons === ev.buttons) {
      held[held.length - 1] = ev;
      return true;
    }
    const bytes = inputBytes(ev);
    if (this.heldBytes + bytes > HELD_INPUT_BYTES) {
      this.log.warn({ bytes: this.heldBytes }, 'input held during a move is full: dropped');
      return false;
    }
    held.push(ev);
    this.heldBytes += bytes;
    return true;
  }

  /**
   * Send the last pointer event again (a live migration's switch wakes the destination's
   * display refresh with it). False when there was none or it was not sent.
   */
  repeatPointer(): boolean {
    const p = this.lastPointer;
    return (
      p !== undefined && this.link !== undefined && this.link.pointerEvent(p.x, p.y, p.buttons)
    );
  }

  private send(ev: DesktopInput): boolean {
    const link = this.link;
    if (!link) return false;
    switch (ev.kind) {
      case 'key':
        return link.keyEvent(ev.keysym, ev.down);
      case 'pointer':
        this.lastPointer = ev;
        return link.pointerEvent(ev.x, ev.y, ev.buttons);
      case 'clipboard':
        return link.clientCutText(ev.text);
      case 'resize':
        return link.setDesktopSize(ev.width, ev.height);
    }
  }

  /**
   * A live migration's switch: the destination's framebuffer (drawn by a second link, see
   * staging.ts) becomes the mirror's. Viewers get only the squares that differ from what
   * the mirror holds, which is what they were sent (decision 12: the move costs nothing
   * visible). Returns how many pixels' squares differed.
   */
  adoptFramebuffer(fb: Buffer, width: number, height: number): number {
    this.flushMoves();
    if (width !== this.width || height !== this.height) {
      this.resize(width, height);
      this.applyResize();
    }
    let changed = 0;
    const stride = width * 4;
    for (let ty = 0; ty < height; ty += ADOPT_TILE) {
      const th = Math.min(ADOPT_TILE, height - ty);
      for (let tx = 0; tx < width; tx += ADOPT_TILE) {
        const tw = Math.min(ADOPT_TILE, width - tx);
        let differs = false;
        for (let row = ty; row < ty + th && !differs; row++) {
          const start = row * stride + tx * 4;
          differs = fb.compare(this.fb, start, start + tw * 4, start, start + tw * 4) !== 0;
        }
        if (!differs) continue;
        for (let row = ty; row < ty + th; row++) {
          const start = row * stride + tx * 4;
          fb.copy(this.fb, start, start, start + tw * 4);
        }
        changed += tw * th;
        this.touched({ x: tx, y: ty, w: tw, h: th });
      }
    }
    // moves are found against the mirror as it now is
    if (this.moves) this.detectMoves(true);
    for (const v of this.attached) v.flush();
    return changed;
  }

  // ---- FramebufferSink (called by the RFB client) ----

  /**
   * The server announced a new size. Applying it costs O(area) (a new mirror, the overlap
   * copied, every viewer's grid), so it waits until pixels arrive for it or the parser has
   * read all it has: a burst of resizes costs one reallocation, not one each.
   */
  resize(width: number, height: number): void {
    this.pendingSize =
      width === this.width && height === this.height ? undefined : { width, height };
  }

  /** the parser has read what arrived: apply a pending size and let viewers catch up */
  idle(): void {
    if (this.applyResize()) for (const v of this.attached) v.flush();
  }

  private applyResize(): boolean {
    const size = this.pendingSize;
    if (size === undefined) return false;
    this.pendingSize = undefined;
    this.spendResize();
    this.reallocations++;
    const { width, height } = size;
    const old = this.fb;
    const oldW = this.width;
    const oldH = this.height;
    this.width = width;
    this.height = height;
    this.fb = Buffer.alloc(width * height * 4);
    // keep what overlaps, so a resize does not flash black before the server repaints
    const w = Math.min(width, oldW);
    for (let y = 0; y < Math.min(height, oldH); y++)
      old.copy(this.fb, y * width * 4, y * oldW * 4, y * oldW * 4 + w * 4);
    this.band = undefined; // of the old size
    this.heat.resize(width, height);
    if (this.moves) this.detectMoves(true);
    for (const v of this.attached) v.resized();
    return true;
  }

  private spendResize(): void {
    const b = this.resizeBudget;
    const now = this.clock.now();
    b.tokens = Math.min(RESIZE_BURST, b.tokens + ((now - b.at) * RESIZES_PER_SEC) / 1000);
    b.at = now;
    if (b.tokens < 1) {
      throw new RfbProtocolError(
        'resize-flood',
        `the desktop changed its framebuffer size with pixels in between more than ${RESIZE_BURST} times in a burst (${RESIZES_PER_SEC}/s allowed after it)`,
      );
    }
    b.tokens--;
  }

  putPixels(x: number, y: number, w: number, h: number, pixels: Buffer): void {
    let read = 0;
    this.putRows(x, y, w, h, {
      readInto: (dst, at, bytes) => {
        pixels.copy(dst, at, read, read + bytes);
        read += bytes;
      },
    });
  }

  putRows(x: number, y: number, w: number, h: number, rows: RowSource): void {
    this.applyResize();
    const rowBytes = w * 4;
    if (x === 0 && w === this.width) rows.readInto(this.fb, y * rowBytes, h * rowBytes);
    else
      for (let row = 0; row < h; row++)
        rows.readInto(this.fb, ((y + row) * this.width + x) * 4, rowBytes);
    this.heatBand(x, y, w, h);
    if (this.moves) {
      // held back until the update ends: some of it may turn out to be moved content
      this.moves.pending.push({ x, y, w, h });
    } else for (const v of this.attached) v.damage({ x, y, w, h });
  }

  /**
   * A rect's rows arrive in bands (as the socket delivers them): its heat is told once, for
   * the whole rect, not once per band, so a cell under two bands changed once (the rate is
   * of updates, not of bands) and a full-screen picture costs one pass over the cells.
   */
  private heatBand(x: number, y: number, w: number, h: number): void {
    const b = this.band;
    if (b !== undefined && b.x === x && b.w === w && b.y + b.h === y) {
      b.h += h;
      return;
    }
    this.flushHeat();
    this.band = { x, y, w, h };
  }

  private flushHeat(): void {
    const b = this.band;
    if (b === undefined) return;
    this.band = undefined;
    this.heat.touch(b);
  }

  /**
   * Look for moved content in servers that send no CopyRect (QEMU): rows whose new content
   * hashes like other rows before the update become copies, so a scrolling console costs a
   * copy and one new line instead of the whole screen.
   */
  detectMoves(on: boolean): void {
    this.moves = on ? new MoveDetector(this.width, this.height, this.fb) : undefined;
  }

  /** pixels of an update under way wait for its end to be told (see MirrorView.midUpdate) */
  get midUpdate(): boolean {
    return (this.moves?.pending.length ?? 0) > 0;
  }

  private flushMoves(): void {
    const m = this.moves;
    if (!m || m.pending.length === 0) return;
    const pending = m.pending;
    m.pending = [];
    const found = m.detect(this.fb, pending);
    for (const op of found.copies) for (const v of this.attached) v.copy(op);
    for (const r of found.damage) for (const v of this.attached) v.damage(r);
  }

  copyRect(srcX: number, srcY: number, x: number, y: number, w: number, h: number): void {
    this.applyResize();
    this.flushMoves(); // pixels before this copy belong before it
    const rowBytes = w * 4;
    const stride = this.width * 4;
    const fb = this.fb;
    if (x === 0 && srcX === 0 && w === this.width) {
      // whole rows (a full-width scroll): one block, and copyWithin is a memmove
      fb.copyWithin(y * stride, srcY * stride, (srcY + h) * stride);
    } else if (y > srcY) {
      // overlapping moves: walk rows away from the destination so no source row is clobbered
      // first (copyWithin moves within the buffer without a view per row, as copy() makes)
      for (let row = h - 1; row >= 0; row--) {
        const from = (srcY + row) * stride + srcX * 4;
        fb.copyWithin((y + row) * stride + x * 4, from, from + rowBytes);
      }
    } else {
      for (let row = 0; row < h; row++) {
        const from = (srcY + row) * stride + srcX * 4;
        fb.copyWithin((y + row) * stride + x * 4, from, from + rowBytes);
      }
    }
    // moved content is not "changing": it stays lossless unless it changes in place
    for (const v of this.attached) v.copy({ srcX, srcY, x, y, w, h });
  }

  setCursor(hotX: number, hotY: number, w: number, h: number, rgba: Buffer): void {
    this.cursorEncoder.set(hotX, hotY, w, h, rgba);
  }

  updateEnd(): void {
    this.flushHeat();
    this.flushMoves();
    this.updates++;
    if (this.updates === 1) this.resolveFirst();
    // with a size pending, a frame now would be of the old size: idle() flushes instead
    if (this.pendingSize === undefined) for (const v of this.attached) v.flush();
  }

  serverCutText(text: string): void {
    this.events.clipboard(text);
  }

  serverCutTextDropped(length: number, limit: number): void {
    this.log.warn({ length, limit }, 'clipboard from the desktop over the limit: not passed on');
    this.events.clipboardDropped?.(length, limit);
  }

  // ---- MirrorView (read by viewers) ----

  private touched(r: Rect): void {
    this.flushHeat();
    this.heat.touch(r);
    for (const v of this.attached) v.damage(r);
  }

  isHot(r: Rect): boolean {
    this.flushHeat();
    return this.heat.isHot(r);
  }

  quietFor(r: Rect, now: number): number {
    this.flushHeat();
    return this.heat.quietFor(r, now);
  }

  hotCells(): HotCells | undefined {
    this.flushHeat();
    return this.heat.hotCells();
  }

  /** a small JPEG of the whole desktop for the admin console */
  async thumbnail(width = 240): Promise<Buffer> {
    if (this.width === 0) throw new Error('no framebuffer yet');
    return encodeThumbnail(this.fb, this.width, this.height, width);
  }
}
