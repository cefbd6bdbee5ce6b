import type { Clock } from '../clock.js';
import { CELL, DirtyGrid, cellsInside, type CopyOp, type Rect } from './dirty-grid.js';
import { startJobs } from './encode.js';
import { DeflateStream } from './deflate-stream.js';
import { planFrame, type EncodeJob } from './frame-plan.js';
import { writeFrame } from './frame-writer.js';
import { realTimer, type SetTimer, type TimerHandle } from './timer.js';
import type { HotCells } from './heat-map.js';
import { VideoMode, type VideoOptions } from './video/video-mode.js';

/** What a viewer reads from its desktop's mirror. */
export interface MirrorView {
  readonly width: number;
  readonly height: number;
  readonly fb: Buffer;
  /** is most of this rect changing several times a second (video, animation)? */
  isHot(r: Rect): boolean;
  /** ms since the cells of this rect last changed */
  quietFor(r: Rect, now: number): number;
  /** which cells are hot now (video mode looks for a region in motion in them); undefined: none */
  hotCells?(): HotCells | undefined;
  /**
   * An update is under way whose pixels are in the mirror but not yet told as damage or
   * copies (moves are found at its end, against the picture before it): no frame may read
   * the mirror meanwhile, or a copy planned at the end would move pixels the viewer already
   * has in their new place. The mirror flushes its viewers when the update ends.
   */
  readonly midUpdate?: boolean;
}

export interface ViewerStats {
  frames: number;
  bytes: number;
  /** smoothed ms from frame sent to ack received (network + decode + draw) */
  lagMs: number;
  quality: number;
  inFlight: number;
}

/** How a viewer sends and paces its frames. */
export interface ViewerOptions {
  /** sends one binary frame to the browser */
  send(frame: Uint8Array): void;
  /** frames sent and not yet acknowledged before the viewer waits (config.maxFramesInFlight) */
  maxInFlight: number;
  /** a frame could not be built; the next frame is a keyframe */
  onError(e: unknown): void;
  /** schedules the lossless refresh @default realTimer */
  setTimer?: SetTimer;
  /** send regions in motion as video (the browser decodes one of these codecs) */
  video?: VideoOptions;
}

/**
 * A changing rect quiet this long is sent lossless (see mayGoLossy); also the period of the
 * refresh timer. @default 150 ms
 */
export const LOSSLESS_REFRESH_MS = 150;
/**
 * A lossy cell quiet this long is re-sent losslessly. Hot or not: the heat of a 30 fps
 * animation takes ~1.5 s to decay after it stops, far too long to show a lossy picture of a
 * still screen (an animation slower than ~3 fps is refreshed per frame). And not sooner: at
 * the start of a big animation no cell is hot yet, and on a desktop short of CPU (the bench's
 * frames 100–220 ms apart while it started) a 150 ms wait took a gap between updates for the
 * end of the motion — a full-screen lossless refresh of 2.5 MB in the middle of it, which
 * held every frame behind it for a second.
 */
export const SETTLED_MS = 300;
/**
 * A changing rect this big may go lossy (JPEG, when its pixels are photo-like) before its heat
 * says "animated", refreshed losslessly once still, as TigerVNC's JPEG and lossless refresh
 * do. Lossless, the first update of a full-screen animation was a 3.5 MB PNG that took the
 * browser 1.6 s to receive and draw (200 ms to decode on an idle machine, a JPEG of it 75):
 * every frame behind it waited, the bench's 1080p animation had its latency p99 at 1–2 s.
 */
export const LOSSY_FIRST_PIXELS = 512 * 512;
/** At most this many pending copies; beyond that they are sent as pixels. */
const MAX_PENDING_COPIES = 32;
/** Lossy quality for animated content when the viewer keeps up; quiet areas go lossless. */
const MAX_QUALITY = 70;
/** Lossy quality when the viewer lags far behind. */
const MIN_QUALITY = 30;

/**
 * One browser viewing one desktop. Holds only its pending damage (a cell grid) and pending
 * copies, never frames: at most `maxInFlight` frames are unacknowledged; while it is behind,
 * damage accumulates and the next frame carries the newest pixels (docs/architecture.md,
 * decision 5).
 */
export class Viewer {
  readonly dirty: DirtyGrid;
  /**
   * cells lossy on the client's canvas once every frame planned so far has been drawn (kept
   * at plan time, so a copy planned after a lossy frame carries its lossiness along), waiting
   * for a lossless refresh. Cells only: refreshes go cell by cell.
   */
  private readonly lossy: DirtyGrid;
  /** the refresh timer fired: the next frame re-sends the settled lossy cells */
  private refreshDue = false;
  private copies: CopyOp[] = [];
  /** starts anywhere, so a late ack meant for a previous viewer of this socket matches nothing */
  private seq = Math.floor(Math.random() * 0x3fffffff);
  private inFlight = new Map<number, number>(); // seq → sentAt
  private building = false;
  private keyframe = true;
  /** this viewer's zlib stream for palette and RGB rects (see deflate-stream.ts) */
  private readonly zlib = new DeflateStream();
  private closed = false;
  private refreshTimer: TimerHandle | undefined;
  readonly stats: ViewerStats = {
    frames: 0,
    bytes: 0,
    lagMs: 0,
    quality: MAX_QUALITY,
    inFlight: 0,
  };
  /** frames and bytes over the last second, for the admin console */
  private window = { at: 0, frames: 0, bytes: 0, fps: 0, kbps: 0 };
  /** regions in motion as video (video/video-mode.ts), when the browser decodes it */
  readonly video: VideoMode | undefined;

  constructor(
    private readonly mirror: MirrorView,
    private readonly clock: Clock,
    private readonly opts: ViewerOptions,
  ) {
    this.dirty = new DirtyGrid(mirror.width, mirror.height);
    this.lossy = new DirtyGrid(mirror.width, mirror.height, false);
    this.dirty.markAll();
    this.video = opts.video
      ? new VideoMode(
          { mirror, dirty: this.dirty, lagMs: () => this.stats.lagMs, flush: () => this.flush() },
          clock,
          { setTimer: opts.setTimer, ...opts.video },
        )
      : undefined;
  }

  /** the framebuffer changed size: everything is new */
  resized(): void {
    this.dirty.resize(this.mirror.width, this.mirror.height);
    this.lossy.resize(this.mirror.width, this.mirror.height);
    this.dirty.markAll();
    this.copies = [];
    this.keyframe = true;
    this.video?.restart();
  }

  /** full repaint on the next frame (attach, or the client lost its canvas) */
  requestKeyframe(): void {
    this.dirty.markAll();
    this.copies = [];
    this.keyframe = true;
    this.video?.restart();
    this.flush();
  }

  /** The browser could not decode a video chunk: images only for this viewer from now on. */
  videoFailed(regionId: number, reason: string): void {
    this.video?.failed(regionId, reason);
  }

  damage(r: Rect): void {
    this.dirty.mark(r);
  }

  copy(op: CopyOp): void {
    const src = { x: op.srcX, y: op.srcY, w: op.w, h: op.h };
    if (this.keyframe || this.copies.length >= MAX_PENDING_COPIES) {
      this.dirty.mark(op);
      return;
    }
    // The client copies from its own canvas. Where that source is stale (pending damage), the
    // copied pixels are stale too: they are re-sent at their new place after the copy.
    const dx = op.x - op.srcX;
    const dy = op.y - op.srcY;
    const shift = (r: Rect): Rect => ({ x: r.x + dx, y: r.y + dy, w: r.w, h: r.h });
    const staleAfter = this.dirty.dirtyWithin(src).map(shift);
    const lossyAfter = this.lossy.dirtyWithin(src).map(shift);
    this.pushCopy(op);
    // cells wholly overwritten by the copy no longer need their old damage sent
    this.dirty.clearInside(op);
    this.lossy.clearInside(op);
    for (const r of staleAfter) this.dirty.mark(r);
    for (const r of lossyAfter) this.lossy.mark(r);
  }

  /**
   * Queue a copy, merged into the previous one when both move by the same offset, together
   * form one rectangle, and this one's source does not read what the previous one wrote (so
   * one copy from the earlier picture does the same as the two in order). A window drag
   * arrives as many bands like that.
   */
  private pushCopy(op: CopyOp): void {
    const last = this.copies.at(-1);
    if (last && last.x - last.srcX === op.x - op.srcX && last.y - last.srcY === op.y - op.srcY) {
      const srcOverlapsLastDest =
        op.srcX < last.x + last.w &&
        last.x < op.srcX + op.w &&
        op.srcY < last.y + last.h &&
        last.y < op.srcY + op.h;
      const stacked =
        last.x === op.x && last.w === op.w && (last.y + last.h === op.y || op.y + op.h === last.y);
      const sideBySide =
        last.y === op.y && last.h === op.h && (last.x + last.w === op.x || op.x + op.w === last.x);
      if (!srcOverlapsLastDest && (stacked || sideBySide)) {
        const x = Math.min(last.x, op.x);
        const y = Math.min(last.y, op.y);
        const dx = op.x - op.srcX;
        const dy = op.y - op.srcY;
        const w = stacked ? op.w : last.w + op.w;
        const h = stacked ? last.h + op.h : op.h;
        this.copies[this.copies.length - 1] = { x, y, w, h, srcX: x - dx, srcY: y - dy };
        return;
      }
    }
    this.copies.push(op);
  }

  /** The browser has drawn frame `seq` (and every one before it); false if no such frame is in flight. */
  ack(seq: number): boolean {
    const sentAt = this.inFlight.get(seq);
    if (sentAt === undefined) return false; // unknown or duplicate ack: ignore
    // acks are in order; anything older than seq is acknowledged too
    for (const s of this.inFlight.keys()) if (s <= seq) this.inFlight.delete(s);
    const lag = this.clock.now() - sentAt;
    this.stats.lagMs = this.stats.lagMs === 0 ? lag : this.stats.lagMs * 0.8 + lag * 0.2;
    // guacd's rule: quality falls linearly as lag rises past 20 ms (here 30 ms for draw time)
    this.stats.quality = Math.max(
      MIN_QUALITY,
      Math.min(MAX_QUALITY, Math.round(MAX_QUALITY - (this.stats.lagMs - 30))),
    );
    this.stats.inFlight = this.inFlight.size;
    this.flush();
    return true;
  }

  close(): void {
    this.closed = true;
    this.refreshTimer?.cancel();
    this.video?.close();
    this.zlib.close();
  }

  rates(): { fps: number; kbps: number } {
    const now = this.clock.now();
    if (now - this.window.at >= 1000) {
      const secs = (now - this.window.at) / 1000;
      this.window.fps = this.window.at ? this.window.frames / secs : 0;
      this.window.kbps = this.window.at ? (this.window.bytes * 8) / 1000 / secs : 0;
      this.window.at = now;
      this.window.frames = 0;
      this.window.bytes = 0;
    }
    return { fps: Math.round(this.window.fps * 10) / 10, kbps: Math.round(this.window.kbps) };
  }

  /** a frame is being encoded (it is sent when done, and the next one started if due) */
  get encoding(): boolean {
    return this.building;
  }

  /** Send a frame now if there is something to send and room in flight. */
  flush(): void {
    if (this.closed || this.mirror.midUpdate) return;
    this.video?.pump();
    if (this.building || this.inFlight.size >= this.opts.maxInFlight) return;
    if (this.dirty.empty && this.copies.length === 0 && !this.refreshDue && !this.video?.hasChunks)
      return;
    this.building = true;
    this.build().then(
      () => {
        this.building = false;
        this.flush();
      },
      (e: unknown) => {
        this.building = false;
        // a viewer closed mid-frame (its page went away): nothing is lost, nothing to tell
        if (this.closed) return;
        // what was compressed for the lost frame is in our zlib stream but not the client's
        this.keyframe = true;
        this.dirty.markAll();
        // and the client resets its video decoders at the keyframe: the region starts over
        this.video?.restart();
        this.opts.onError(e);
      },
    );
  }

  private scheduleRefresh(): void {
    if (this.refreshTimer || this.lossy.empty || this.closed) return;
    this.refreshTimer = (this.opts.setTimer ?? realTimer)(() => {
      this.refreshTimer = undefined;
      if (this.closed) return;
      // the refresh rides on the next frame: now if there is room in flight, else after an ack
      this.refreshDue = true;
      this.flush();
    }, LOSSLESS_REFRESH_MS);
  }

  /**
   * May a damaged rect go lossy? Only while it is still changing (a rect quiet for
   * LOSSLESS_REFRESH_MS goes lossless at once, so a viewer that catches up after the motion
   * stopped gets the exact picture, not one more lossy one), and only if it is animated (hot)
   * or big (LOSSY_FIRST_PIXELS). Either way it is refreshed losslessly once it is still.
   */
  private mayGoLossy(r: Rect, now: number): boolean {
    if (this.mirror.quietFor(r, now) >= LOSSLESS_REFRESH_MS) return false;
    return r.w * r.h >= LOSSY_FIRST_PIXELS || this.mirror.isHot(r);
  }

  /**
   * The lossy cells that have settled (see SETTLED_MS) and are not about to be re-sent as
   * damage anyway, as runs of cells per cell row. Decided cell by cell: a lossy rect beside
   * something that never stops changing (a clock) is still refreshed.
   */
  private settledLossy(now: number): Rect[] {
    const out: Rect[] = [];
    if (this.lossy.empty) return out;
    const { cols, rows, cells } = this.lossy;
    const dirty = this.dirty.cells;
    const { width, height } = this.mirror;
    // a video region's pictures paint over its cells, and it is refreshed when it ends: a
    // gap in the desktop's updates (Xvnc short of CPU) is no reason to send it losslessly now
    const video = this.video?.region;
    const under = video ? cellsInside(video, width, height) : undefined;
    const cell: Rect = { x: 0, y: 0, w: CELL, h: CELL };
    for (let row = 0; row < rows; row++) {
      const rowUnder = under !== undefined && row >= under.r0 && row < under.r1;
      let run = -1;
      for (let c = 0; c <= cols; c++) {
        const i = row * cols + c;
        let settled = false;
        if (c < cols && cells[i] && !dirty[i] && !(rowUnder && c >= under.c0 && c < under.c1)) {
          cell.x = c * CELL;
          cell.y = row * CELL;
          settled = this.mirror.quietFor(cell, now) >= SETTLED_MS;
        }
        if (settled && run < 0) run = c;
        else if (!settled && run >= 0) {
          const x = run * CELL;
          const y = row * CELL;
          out.push({ x, y, w: Math.min(width, c * CELL) - x, h: Math.min(height, y + CELL) - y });
          run = -1;
        }
      }
    }
    return out;
  }

  /**
   * Lossy bookkeeping of a frame's jobs, in frame order (a later rect paints over an earlier
   * one): `lossy(i)` says whether job i is lossy.
   */
  private markLossy(jobs: readonly EncodeJob[], lossy: (i: number) => boolean): void {
    jobs.forEach((j, i) => (lossy(i) ? this.lossy.mark(j) : this.lossy.clearInside(j)));
  }

  /** Plan, encode and send one frame of everything pending (see frame-plan.ts). */
  private async build(): Promise<void> {
    const { width, height, fb } = this.mirror;
    const now = this.clock.now();
    // settled lossy cells first: they skip cells that are dirty, read before the clear below
    const refresh = this.refreshDue ? this.settledLossy(now) : [];
    this.refreshDue = false;
    // video pictures first: nothing else in the frame overlaps their region
    const video = this.video?.take() ?? [];
    const plan = planFrame(
      this.copies,
      this.dirty.toRects(),
      (r) => this.mayGoLossy(r, now) && !this.video?.forcesLossless(r),
    );
    this.video?.planned();
    for (const r of refresh) plan.jobs.push({ ...r, allowLossy: false });
    this.copies = [];
    this.dirty.clear();
    if (plan.jobs.length === 0 && plan.copies.length === 0 && video.length === 0) {
      this.scheduleRefresh(); // nothing settled yet: look again later
      return;
    }
    const keyframe = this.keyframe;
    this.keyframe = false;
    // the client restarts its inflater at a keyframe, so we restart our deflater with it
    if (keyframe) this.zlib.reset();
    const quality = this.stats.quality;
    const started = startJobs(plan.jobs, fb, width, { quality, zlib: this.zlib });
    // The client draws this frame before anything planned after it (a copy reading these
    // pixels, the next frame): its lossiness is booked now, while it encodes. Video pictures
    // are lossy: their region is refreshed losslessly once it is still.
    for (const v of video) this.lossy.mark(v);
    this.markLossy(plan.jobs, (i) => started.lossy[i]!);
    const encoded = video.concat(await started.done);
    if (this.closed) return;
    if (width !== this.mirror.width || height !== this.mirror.height) return; // resized meanwhile; a keyframe follows
    const seq = ++this.seq >>> 0;
    const sentAt = this.clock.now();
    const bytes = writeFrame({
      seq,
      fbWidth: width,
      fbHeight: height,
      sentAt,
      keyframe,
      copies: plan.copies,
      rects: encoded,
      quality,
      lossless: this.lossy.empty,
    });
    this.inFlight.set(seq, sentAt);
    this.stats.inFlight = this.inFlight.size;
    this.stats.frames++;
    this.stats.bytes += bytes.byteLength;
    this.window.frames++;
    this.window.bytes += bytes.byteLength;
    this.opts.send(bytes);
    this.scheduleRefresh();
  }
}
