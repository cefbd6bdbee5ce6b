import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { FlvH264Reader, type H264Chunk } from './flv-reader.js';
import { codedSize, i420Bytes, type Downscale } from './i420.js';

/** What a video region's encoder is asked for. */
export interface EncoderSpec {
  /** the region's size on the desktop; even (4:2:0) */
  width: number;
  height: number;
  /**
   * the encoded picture is this many times smaller on each side (the browser scales it back
   * up): big regions cost a quarter of the encoding, as in KasmVNC's video mode @default 1
   */
  downscale?: Downscale;
  /** target bit rate, kbit/s */
  kbps: number;
  /** nominal frame rate the bit rate is spread over */
  fps: number;
}

export interface EncoderEvents {
  chunk(c: H264Chunk): void;
  /** the encoder died or wrote something unreadable; it is closed */
  failed(err: Error): void;
}

/**
 * A long-lived encoder of one region: I420 pictures of the coded size (i420.ts: codedSize,
 * rgbxToI420) in, H.264 chunks out, in order.
 */
export interface VideoEncoder {
  /**
   * Encode one I420 picture. False: the encoder is still busy with MAX_PENDING_PICTURES
   * earlier ones, and this one was dropped (never queued).
   */
  encode(i420: Buffer): boolean;
  /**
   * A buffer of one picture's size to fill and hand to encode(): the encoder takes it back
   * once written, so a region in motion does not allocate a picture per frame.
   */
  picture?(): Buffer;
  /** pictures handed over and not yet come back as chunks */
  readonly pending: number;
  /** stop it (kills the child); no event follows */
  close(): void;
}

export type StartEncoder = (spec: EncoderSpec, events: EncoderEvents) => VideoEncoder;

/**
 * Pictures an encoder holds at most (one encoding, one waiting in its pipe): beyond that
 * the newest picture is dropped, and the region's damage waits for the next one.
 */
export const MAX_PENDING_PICTURES = 2;
/** Keyframe interval in pictures: a viewer's decoder recovers from a lost state within this. */
export const GOP_PICTURES = 120;
/** Bytes of ffmpeg's stderr kept for the error message. */
const STDERR_TAIL_BYTES = 2048;

/** The coded picture of a spec (what encode() takes, in I420). */
export function specCodedSize(spec: EncoderSpec): { w: number; h: number } {
  return codedSize(spec.width, spec.height, spec.downscale ?? 1);
}

/**
 * ffmpeg's arguments: raw I420 of the coded size on stdin (converted and scaled by the
 * gateway), low-latency x264 constrained baseline in FLV on stdout.
 */
export function ffmpegArgs(spec: EncoderSpec): string[] {
  const k = Math.max(1, Math.round(spec.kbps));
  const { w, h } = specCodedSize(spec);
  return [
    ...['-hide_banner', '-loglevel', 'error', '-nostats'],
    ...['-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${w}x${h}`],
    ...['-framerate', String(spec.fps), '-i', 'pipe:0', '-an'],
    ...['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency'],
    // no B-frames: every picture comes out as soon as it went in
    ...['-profile:v', 'baseline', '-bf', '0', '-g', String(GOP_PICTURES), '-threads', '1'],
    // VBV of half a second: the rate holds over short spans, not just on average
    ...['-b:v', `${k}k`, '-maxrate', `${k}k`, '-bufsize', `${Math.max(1, Math.round(k / 2))}k`],
    // say BT.601 limited range in the stream, which is what rgbxToI420 produced
    ...['-color_range', 'tv', '-colorspace', 'smpte170m'],
    ...['-color_primaries', 'smpte170m', '-color_trc', 'smpte170m'],
    ...['-fps_mode', 'passthrough', '-flush_packets', '1', '-f', 'flv', 'pipe:1'],
  ];
}

/** ffmpeg with libx264 as a child process per video region (Debian's `ffmpeg` package). */
export class FfmpegEncoder implements VideoEncoder {
  private readonly child: ChildProcessByStdio<Writable, Readable, Readable>;
  private readonly reader = new FlvH264Reader();
  private inFlight = 0;
  /** picture buffers of this encoder (picture()), and those written and free again */
  private readonly own = new WeakSet<Buffer>();
  private readonly free: Buffer[] = [];
  private closed = false;
  private stderr = '';
  /** resolves when the child has exited */
  readonly exited: Promise<void>;

  constructor(
    private readonly spec: EncoderSpec,
    private readonly events: EncoderEvents,
    ffmpegPath = 'ffmpeg',
  ) {
    this.child = spawn(ffmpegPath, ffmpegArgs(spec), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.child.once('close', () => resolve()));
    this.child.stdout.on('data', (d: Buffer) => this.output(d));
    this.child.stderr.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString('utf8')).slice(-STDERR_TAIL_BYTES);
    });
    // EPIPE when the child died: its exit says why
    this.child.stdin.on('error', () => undefined);
    this.child.on('error', (err) => this.fail(err));
    this.child.on('exit', (code, signal) => {
      if (!this.closed) {
        const why = this.stderr.trim().split('\n').at(-1) ?? '';
        this.fail(new Error(`ffmpeg exited (code ${code}, signal ${signal}) ${why}`.trim()));
      }
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get pending(): number {
    return this.inFlight;
  }

  encode(i420: Buffer): boolean {
    if (this.closed || this.inFlight >= MAX_PENDING_PICTURES) {
      if (this.own.has(i420)) this.giveBack(i420);
      return false;
    }
    if (i420.length !== this.pictureBytes) {
      const { w, h } = specCodedSize(this.spec);
      throw new RangeError(`picture of ${i420.length} bytes for a ${w}x${h} I420 picture`);
    }
    this.inFlight++;
    if (this.own.has(i420))
      // written to the pipe: the buffer is free again
      this.child.stdin.write(i420, () => this.giveBack(i420));
    else this.child.stdin.write(i420);
    return true;
  }

  private get pictureBytes(): number {
    const { w, h } = specCodedSize(this.spec);
    return i420Bytes(w, h);
  }

  /** a picture buffer of ours is free again (at most one more than can be pending is kept) */
  private giveBack(buf: Buffer): void {
    if (this.free.length < MAX_PENDING_PICTURES + 1) this.free.push(buf);
  }

  picture(): Buffer {
    const free = this.free.pop();
    if (free) return free;
    const buf = Buffer.allocUnsafe(this.pictureBytes);
    this.own.add(buf);
    return buf;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.child.stdin.destroy();
    this.child.stdout.destroy();
    this.child.kill('SIGKILL');
  }

  private output(d: Buffer): void {
    if (this.closed) return;
    let chunks: H264Chunk[];
    try {
      chunks = this.reader.push(d);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    for (const c of chunks) {
      this.inFlight = Math.max(0, this.inFlight - 1);
      this.events.chunk(c);
      if (this.closed) return;
    }
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.close();
    this.events.failed(err);
  }
}

export const startFfmpeg =
  (ffmpegPath = 'ffmpeg'): StartEncoder =>
  (spec, events) =>
    new FfmpegEncoder(spec, events, ffmpegPath);
