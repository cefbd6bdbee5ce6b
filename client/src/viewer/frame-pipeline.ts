/**
 * The viewer's frame pipeline: a wire frame → its rects decoded all at once
 * (rect-decoder.ts) → drawn in arrival order on the canvas (frame-queue.ts) → acknowledged,
 * which is what the server's flow control waits for. A frame that cannot be decoded is
 * acknowledged all the same (flow control must go on) and a repaint is asked for.
 */
import { FrameVersionError, decodeFrame } from '@vdi/shared';
import { browserClock, type Clock } from '../clock';
import type { CanvasPainter } from './canvas-painter';
import { FrameQueue } from './frame-queue';
import { InflateStream } from './inflate-stream';
import { decodeRects, peekSeq, releaseFrame, type DecodedFrame } from './rect-decoder';
import type { RepaintRequests } from './repaint-requests';
import type { ViewerStats } from './stats';
import { VideoDecoders } from './video-decoders';

export interface FramePipelineListener {
  /** a frame is on the canvas; `resized`: the framebuffer changed size with it */
  drawn(frame: DecodedFrame, resized: boolean): void;
  /** tell the server the frame is drawn */
  ack(seq: number, renderMs: number): void;
  /** a video decoder failed: the server should send images from now on */
  videoFailed?(regionId: number, reason: string): void;
  /**
   * The server sends frames of another layout version (it was upgraded while this page was
   * open): nothing will be drawn until the page is loaded again. Told once.
   */
  outdated?(serverVersion: number): void;
}

export class FramePipeline {
  /** the server's zlib stream for this viewer; restarted by every keyframe */
  private readonly zlib: InflateStream;
  private readonly queue: FrameQueue<DecodedFrame>;
  private lastDrawn = { rects: 0, quality: 0 };
  private toldOutdated = false;
  /** decoders of the server's video regions (video-decoders.ts) */
  readonly video: VideoDecoders;

  constructor(
    painter: CanvasPainter,
    private readonly stats: ViewerStats,
    private readonly repaint: RepaintRequests,
    private readonly on: FramePipelineListener,
    clock: Clock = browserClock,
  ) {
    this.zlib = new InflateStream(clock);
    this.video = new VideoDecoders({
      failed: (regionId, reason) => on.videoFailed?.(regionId, reason),
    });
    this.queue = new FrameQueue<DecodedFrame>(
      {
        draw: (frame) => {
          const { width, height } = painter;
          const failed = painter.paint(frame);
          this.lastDrawn = { rects: frame.rects.length, quality: frame.quality };
          on.drawn(frame, painter.width !== width || painter.height !== height);
          if (failed) repaint.request(frame.rects.find((r) => r.kind === 'failed'));
        },
        ack: (seq, renderMs) => {
          stats.drawn(this.lastDrawn.rects, renderMs, this.lastDrawn.quality);
          on.ack(seq, renderMs);
        },
        discard: releaseFrame,
        fail: (_seq, err) => repaint.request(err),
      },
      () => clock.now(),
    );
  }

  /** A frame from the server. */
  receive(data: Uint8Array): void {
    this.stats.received(data.byteLength);
    let frame;
    try {
      frame = decodeFrame(data);
    } catch (err) {
      const seq = peekSeq(data);
      if (seq !== undefined) this.on.ack(seq, 0);
      if (err instanceof FrameVersionError) {
        // a repaint would come in the same layout: only loading the page again helps
        if (!this.toldOutdated) this.on.outdated?.(err.version);
        this.toldOutdated = true;
        return;
      }
      this.repaint.request(err);
      return;
    }
    this.queue.push(frame.seq, decodeRects(frame, this.zlib, this.video));
  }

  /** The attachment is gone: frames still decoding are neither drawn nor acknowledged. */
  reset(): void {
    this.queue.reset();
    // the next attachment starts with a keyframe, and its regions with a key chunk
    this.video.reset();
  }
}
