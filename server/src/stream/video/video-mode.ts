import { Codec, videoPayload, type VideoCodecFamily } from '@vdi/shared';
import type { Clock } from '../../clock.js';
import { analyse } from '../classify.js';
import type { DirtyGrid, Rect } from '../dirty-grid.js';
import type { EncodedRect } from '../encode.js';
import type { HotCells } from '../heat-map.js';
import { realTimer, type SetTimer, type TimerHandle } from '../timer.js';
import type { StartEncoder, VideoEncoder } from './encoder.js';
import type { H264Chunk } from './flv-reader.js';
import { codedSize, i420Bytes, rgbxToI420, type Downscale } from './i420.js';
import { findVideoRegion, overlap } from './region-finder.js';

/**
 * Pictures in an encoder at once: two keep the child busy while the last chunk is on its way
 * (it runs as its own process, which a loaded machine schedules late), at one more picture of
 * latency; never more than the encoder takes (MAX_PENDING_PICTURES).
 */
const PIPELINE_PICTURES = 2;
/** How often the hot cells are looked at for a region in motion, and a region for stillness, ms. */
export const VIDEO_CHECK_MS = 100;
/** A region must stay in motion, in about the same place, this long before it goes video, ms. */
export const VIDEO_ENTER_MS = 500;
/** A video region quiet this long ends: it is then sent again losslessly, ms. */
export const VIDEO_EXIT_QUIET_MS = 250;
/** A changed bit-rate step must hold this long before the encoder is restarted at it, ms. */
export const VIDEO_LEVEL_HOLD_MS = 2000;
/** Candidate regions overlapping at least this much (IoU) count as the same place. */
const SAME_PLACE = 0.6;
/** Nominal frame rate of the encoder's rate control. */
const VIDEO_FPS = 30;
/** Bits per pixel per picture at each step; the step follows the viewer's ack lag. */
const BITS_PER_PIXEL = [0.1, 0.05, 0.025] as const;
/** Ack lag (ms) from which each step above the first applies. */
const LAG_STEPS_MS = [80, 200] as const;
const MIN_KBPS = 150;
/**
 * Regions above this many pixels are encoded at half width and height (the browser scales
 * them back up until the lossless refresh): a full-screen 1080p picture costs x264 and the
 * RGB → YUV conversion four times less, which is what keeps it near 30 frames/s on 2 cores.
 */
const DOWNSCALE_ABOVE_PIXELS = 1280 * 720;
/** Rows of a candidate region whose colours are counted (see fewColours), at most. */
const COLOUR_SAMPLE_ROWS = 32;
const MAX_KBPS = 8000;
/** The encoder of a region has this long to return a picture before video is given up, ms. */
const ENCODER_STALL_MS = 3000;
/**
 * A new encoder's pictures are shown once one comes out at most this long after it went in,
 * ms. Its first one is of the region as it was when the encoder started, and on a loaded
 * machine ffmpeg takes 0.5–1 s to start: shown as it came, the browser went back that far in
 * time (the images before it, or the old encoder's pictures at a change of rate, were newer).
 * Until then its chunks are held, and go out together (the browser decodes them all and
 * paints the last).
 */
export const FRESH_PICTURE_MS = 150;
/** At most this many chunks are held back (about a second): then they go out anyway. */
const MAX_HELD_CHUNKS = 30;

/** What video mode reads of a desktop's mirror. */
export interface VideoMirror {
  readonly width: number;
  readonly height: number;
  readonly fb: Buffer;
  quietFor(r: Rect, now: number): number;
  hotCells?(): HotCells | undefined;
}

/** The viewer a video mode works for. */
export interface VideoHost {
  readonly mirror: VideoMirror;
  /** the viewer's pending damage; video takes its region's share out of it */
  readonly dirty: DirtyGrid;
  /** smoothed ack lag, ms */
  lagMs(): number;
  /** something is ready to send */
  flush(): void;
}

export interface VideoLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** How a viewer does video (ViewerOptions.video). */
export interface VideoOptions {
  /** what the browser decodes (from its attach); only 'avc1' is produced */
  codecs: readonly VideoCodecFamily[];
  start: StartEncoder;
  log: VideoLog;
  /** @default realTimer */
  setTimer?: SetTimer;
}

/** region ids are one byte on the wire and wrap */
const nextRegionId = (id: number): number => (id + 1) & 0xff;

interface Active {
  region: Rect;
  /** the region id its chunks carry (the browser opens a decoder per id) */
  regionId: number;
  encoder: VideoEncoder;
  downscale: Downscale;
  level: number;
  /** the encoder has returned its first picture: the region is video's from now on */
  warm: boolean;
  /** region damage not yet handed to the encoder */
  dirty: boolean;
  /** encoded and not yet sent (at most one: a new picture is taken only when it is gone) */
  ready: EncodedRect[];
  /** when each picture still in the encoder went in, oldest first */
  fedAt: number[];
  /** its chunks from its first (key) picture on, held until one is fresh (FRESH_PICTURE_MS) */
  held: EncodedRect[];
  /** when the oldest picture still in the encoder went in */
  waitingSince: number | undefined;
  /** a different step wanted since, for VIDEO_LEVEL_HOLD_MS */
  levelWanted: { level: number; since: number } | undefined;
}

/**
 * Video mode of one viewer (issue 10): a region that keeps changing (the desktop's heat map)
 * goes to a long-lived H.264 encoder, and its pictures ride in the viewer's normal frames as
 * Codec.Video rects, so flow control and ordering stay those of decision 5. Everything
 * outside the region keeps the normal path; when the region is still, it ends and its pixels
 * are sent again losslessly. One region per viewer; an encoder or decoder failure turns
 * video off for the viewer, which then gets images only.
 */
export class VideoMode {
  private active: Active | undefined;
  /**
   * The same region at a new bit rate, warming up while the active encoder goes on: it takes
   * over with its first key picture, so a change of rate never repaints the region as images.
   */
  private next: Active | undefined;
  private candidate: { region: Rect; since: number } | undefined;
  private lastLook = -Infinity;
  private timer: TimerHandle | undefined;
  /** sent again losslessly on the next frame (the region of a video that ended) */
  private refresh: Rect | undefined;
  private disabled: string | undefined;
  private regionId = 0;
  /** counters for tests and the log */
  readonly counts = { entered: 0, exited: 0, pictures: 0, dropped: 0, chunks: 0 };

  constructor(
    private readonly host: VideoHost,
    private readonly clock: Clock,
    private readonly opts: VideoOptions,
  ) {
    if (!opts.codecs.includes('avc1')) this.disabled = 'the browser decodes no codec we send';
  }

  /** the region being sent as video, if any */
  get region(): Rect | undefined {
    return this.active?.region;
  }

  /** why video is off for good, if it is */
  get off(): string | undefined {
    return this.disabled;
  }

  /** an encoded picture waits to be sent */
  get hasChunks(): boolean {
    return (this.active?.ready.length ?? 0) > 0;
  }

  /**
   * Before the viewer looks at its damage: take the region's damage out of it (to the
   * encoder), and look for a region in motion now and then.
   */
  pump(): void {
    if (this.disabled !== undefined) return;
    const now = this.clock.now();
    if (!this.active && now - this.lastLook >= VIDEO_CHECK_MS) {
      this.lastLook = now;
      this.look(now);
    }
    const a = this.active;
    if (!a) return;
    const n = this.next;
    if (this.host.dirty.intersects(a.region)) {
      a.dirty = true;
      // the replacement is fed the same pictures, one at a time, until one comes out fresh
      if (n) n.dirty = true;
      // until the encoder is warm the normal path keeps painting the region too
      if (a.warm) this.host.dirty.clearInside(a.region);
    }
    if (n && n.dirty && n.encoder.pending === 0 && this.feed(n)) n.waitingSince = now;
    // a picture may go in while the one before is still encoding (the child works while its
    // chunk travels), but none while an encoded one waits for the viewer: it is behind
    if (!a.dirty || a.ready.length > 0 || a.encoder.pending >= PIPELINE_PICTURES) return;
    if (this.feed(a)) {
      a.waitingSince = now;
      this.counts.pictures++;
    } else this.counts.dropped++;
  }

  /** Hand the region's pixels to an encoder; false if it was busy. */
  private feed(a: Active): boolean {
    const { fb, width, height } = this.host.mirror;
    const r = a.region;
    if (r.x + r.w > width || r.y + r.h > height) {
      // the framebuffer shrank under it (the viewer's restart is on its way): no picture
      this.stop(false);
      return false;
    }
    const { w, h } = codedSize(r.w, r.h, a.downscale);
    const picture = a.encoder.picture?.() ?? Buffer.allocUnsafe(i420Bytes(w, h));
    if (!a.encoder.encode(rgbxToI420(fb, width, r, a.downscale, picture))) return false;
    a.fedAt.push(this.clock.now());
    a.dirty = false;
    return true;
  }

  /** The encoded pictures to put first in the frame being built (lossy: refreshed later). */
  take(): EncodedRect[] {
    const a = this.active;
    if (!a || a.ready.length === 0) return [];
    const out = a.ready;
    a.ready = [];
    return out;
  }

  /** Must `r` go lossless in the frame being planned (it holds an ended video)? */
  forcesLossless(r: Rect): boolean {
    return this.refresh !== undefined && overlap(this.refresh, r) > 0;
  }

  /** the frame holding the lossless refresh has been planned */
  planned(): void {
    this.refresh = undefined;
  }

  /**
   * The viewer starts over (keyframe, resize): the browser resets its decoders, so the
   * region ends; the keyframe repaints it anyway.
   */
  restart(): void {
    this.stop(false);
  }

  /** The browser could not decode: images only from now on, and the region repainted. */
  failed(regionId: number, reason: string): void {
    if (this.disabled !== undefined) return;
    this.opts.log.warn(
      { regionId, reason },
      'video decode failed in the browser: images from now on',
    );
    this.disabled = `decoder: ${reason}`;
    this.stop(true);
  }

  close(): void {
    this.disabled ??= 'closed';
    this.stop(false);
  }

  private look(now: number): void {
    const cells = this.host.mirror.hotCells?.();
    const found = cells && findVideoRegion(cells, this.host.mirror.width, this.host.mirror.height);
    // still cells stay hot for a while after motion ends: only fresh motion counts
    if (!found || this.host.mirror.quietFor(found, now) >= VIDEO_EXIT_QUIET_MS) {
      this.candidate = undefined;
      return;
    }
    // Text and flat drawing in motion (a terminal's newest lines while it scrolls, a
    // flat-coloured animation) are exact and small as palette images; video is for
    // photo-like pictures, which it would otherwise blur
    if (this.fewColours(found)) {
      this.candidate = undefined;
      return;
    }
    const c = this.candidate;
    if (!c || overlap(c.region, found) < SAME_PLACE) {
      this.candidate = { region: found, since: now };
      return;
    }
    // the region keeps moving a little (a video's edges flicker in and out): take the newest
    c.region = found;
    if (now - c.since >= VIDEO_ENTER_MS) {
      this.candidate = undefined;
      this.enter(found, this.levelFor(this.host.lagMs()));
    }
  }

  /**
   * Has the region's picture at most a palette's worth of colours (classify.ts)? Counted on
   * up to COLOUR_SAMPLE_ROWS rows spread over it, so a full-screen region costs a few
   * hundred µs, not a pass over every pixel.
   */
  private fewColours(r: Rect): boolean {
    const { fb, width } = this.host.mirror;
    const rows = Math.min(r.h, COLOUR_SAMPLE_ROWS);
    const rowBytes = r.w * 4;
    const sample = Buffer.allocUnsafe(rows * rowBytes);
    for (let k = 0; k < rows; k++) {
      const y = r.y + Math.floor((k * r.h) / rows);
      const src = (y * width + r.x) * 4;
      fb.copy(sample, k * rowBytes, src, src + rowBytes);
    }
    return analyse(sample, r.w, rows).kind !== 'many';
  }

  private enter(region: Rect, level: number): void {
    this.active = this.encoderFor(region, level, this.regionId);
    this.counts.entered++;
    this.schedule();
  }

  /** An encoder for `region` at `level`'s bit rate, its chunks carrying `regionId`. */
  private encoderFor(region: Rect, level: number, regionId: number): Active {
    const downscale: Downscale = region.w * region.h > DOWNSCALE_ABOVE_PIXELS ? 2 : 1;
    const coded = (region.w * region.h) / (downscale * downscale);
    const kbps = Math.min(
      MAX_KBPS,
      Math.max(MIN_KBPS, (coded * VIDEO_FPS * BITS_PER_PIXEL[level]!) / 1000),
    );
    const a: Active = {
      region,
      regionId,
      level,
      downscale,
      warm: false,
      dirty: true,
      ready: [],
      fedAt: [],
      held: [],
      waitingSince: undefined,
      levelWanted: undefined,
      encoder: undefined as unknown as VideoEncoder,
    };
    a.encoder = this.opts.start(
      { width: region.w, height: region.h, kbps, fps: VIDEO_FPS, downscale },
      {
        chunk: (c) => this.chunk(a, c),
        failed: (err) => {
          if (this.active !== a && this.next !== a) return;
          this.opts.log.warn(
            { err: err.message, region },
            'video encoder failed: images from now on',
          );
          this.disabled = `encoder: ${err.message}`;
          this.stop(true);
        },
      },
    );
    this.opts.log.info(
      { region, kbps: Math.round(kbps), level, downscale },
      'video region started',
    );
    return a;
  }

  /** A chunk out of `a`'s encoder (the active one's, or its replacement's). */
  private chunk(a: Active, c: H264Chunk): void {
    const now = this.clock.now();
    const fedAt = a.fedAt.shift();
    a.waitingSince = a.encoder.pending > 0 ? now : undefined;
    if (this.active !== a && this.next !== a) return;
    const { x, y, w, h } = a.region;
    const rect: EncodedRect = {
      x,
      y,
      w,
      h,
      codec: Codec.Video,
      payload: videoPayload({ regionId: a.regionId, key: c.key, codec: c.codec, data: c.data }),
      lossy: true,
    };
    if (a.warm) {
      a.ready.push(rect);
      this.counts.chunks++;
      this.host.flush();
      return;
    }
    // not shown yet: a decoder starts at the first picture out of an encoder, a key
    if (a.held.length === 0 && !c.key) return;
    a.held.push(rect);
    const stale = fedAt !== undefined && now - fedAt > FRESH_PICTURE_MS;
    if (stale && a.held.length < MAX_HELD_CHUNKS) return;
    if (this.next === a) this.takeOver(a);
    this.lead(a);
  }

  /** The replacement leads from here (its chunks are fresh), the encoder before it stops. */
  private takeOver(n: Active): void {
    const old = this.active;
    this.next = undefined;
    if (old) {
      // what the old encoder holds or has not sent yet is of a region the browser is about
      // to close: the replacement is fed the newest pixels instead
      old.encoder.close();
    }
    n.dirty = true;
    this.regionId = n.regionId;
    this.active = n;
  }

  /** `a`'s held chunks go out, and its region is video's from now on. */
  private lead(a: Active): void {
    a.warm = true;
    this.host.dirty.clearInside(a.region);
    a.ready.push(...a.held);
    this.counts.chunks += a.held.length;
    a.held = [];
    this.host.flush();
  }

  private schedule(): void {
    if (this.timer || !this.active) return;
    this.timer = (this.opts.setTimer ?? realTimer)(() => {
      this.timer = undefined;
      this.tick();
    }, VIDEO_CHECK_MS);
  }

  /** while a region is video: has it gone still, does the bit rate follow the lag, is the encoder alive? */
  private tick(): void {
    const a = this.active;
    if (!a) return;
    const now = this.clock.now();
    if (this.host.mirror.quietFor(a.region, now) >= VIDEO_EXIT_QUIET_MS && !a.dirty) {
      this.stop(true);
      return;
    }
    const stalled = (e: Active | undefined) =>
      e?.waitingSince !== undefined && now - e.waitingSince >= ENCODER_STALL_MS;
    if (stalled(a) || stalled(this.next)) {
      this.opts.log.warn({ region: a.region }, 'video encoder stalled: images from now on');
      this.disabled = 'encoder stalled';
      this.stop(true);
      return;
    }
    const want = this.levelFor(this.host.lagMs());
    if (want === a.level) {
      a.levelWanted = undefined;
      // the lag came back before the replacement was ready: the rate stays
      this.next?.encoder.close();
      this.next = undefined;
    } else if (!a.levelWanted || a.levelWanted.level !== want)
      a.levelWanted = { level: want, since: now };
    else if (now - a.levelWanted.since >= VIDEO_LEVEL_HOLD_MS) {
      // x264 in a child cannot change its rate on the fly: a new encoder at the new rate
      if (!a.warm) {
        // nothing shown of this one yet: simply start over
        const region = a.region;
        this.stop(false);
        this.enter(region, want);
        return;
      }
      if (this.next?.level !== want) {
        this.next?.encoder.close();
        this.next = this.encoderFor(a.region, want, nextRegionId(a.regionId));
        a.levelWanted = undefined;
      }
    }
    this.schedule();
    // a picture may be due that no frame flush asked for (the encoder was busy then)
    if (a.dirty) this.host.flush();
  }

  private levelFor(lagMs: number): number {
    let level = 0;
    for (const step of LAG_STEPS_MS) if (lagMs >= step) level++;
    return level;
  }

  /** End the region; `refresh`: send it again losslessly (the canvas holds video there). */
  private stop(refresh: boolean): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.next?.encoder.close();
    this.next = undefined;
    const a = this.active;
    if (!a) return;
    this.active = undefined;
    this.candidate = undefined;
    this.lastLook = this.clock.now();
    a.encoder.close();
    this.counts.exited++;
    this.regionId = nextRegionId(this.regionId);
    // once warm, the region's damage went to the encoder, and what it held back (pictures not
    // yet encoded or not yet sent) is lost with it: the normal path sends the region again
    if (a.warm) this.host.dirty.mark(a.region);
    if (refresh) {
      if (a.warm) this.refresh = a.region;
      this.host.flush();
    }
  }
}
