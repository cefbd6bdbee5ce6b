/**
 * Keeps frames in sequence order between "received" and "drawn".
 *
 * Every frame starts decoding the moment it arrives (its rects concurrently, and frames
 * concurrently with each other), but a frame is drawn only after the one before it, and
 * acknowledged only after it is drawn: the server's flow control counts a frame as in
 * flight until the pixels are on screen (docs/architecture.md, decision 5).
 */

export interface FrameSink<T> {
  /** paint one decoded frame; called in push order, never concurrently */
  draw(frame: T): void;
  /** the frame is on screen; renderMs = arrival → drawn */
  ack(seq: number, renderMs: number): void;
  /** a frame that will never be drawn (queue reset by a reconnect): free its bitmaps */
  discard?(frame: T): void;
  /** decoding or drawing failed; the frame is still acknowledged so flow control moves on */
  fail?(seq: number, error: unknown): void;
}

export class FrameQueue<T> {
  private tail: Promise<void> = Promise.resolve();
  private epoch = 0;
  private inFlight = 0;

  constructor(
    private readonly sink: FrameSink<T>,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Frames received but not yet drawn (or dropped). */
  get pending(): number {
    return this.inFlight;
  }

  push(seq: number, decoding: Promise<T>, receivedAt: number = this.now()): void {
    const epoch = this.epoch;
    this.inFlight++;
    // Rejections are handled in turn below; this keeps an early one from being reported
    // as unhandled while earlier frames are still drawing.
    decoding.catch(() => {});
    this.tail = this.tail
      .then(() => this.settle(seq, decoding, receivedAt, epoch))
      .catch((err: unknown) => {
        // a throwing sink must not break the chain for the frames behind this one
        console.error('frame queue: sink failed', err);
      })
      .finally(() => {
        this.inFlight--;
      });
  }

  private async settle(
    seq: number,
    decoding: Promise<T>,
    receivedAt: number,
    epoch: number,
  ): Promise<void> {
    let frame: T;
    try {
      frame = await decoding;
    } catch (err) {
      if (epoch !== this.epoch) return;
      this.sink.fail?.(seq, err);
      this.sink.ack(seq, this.now() - receivedAt);
      return;
    }
    if (epoch !== this.epoch) {
      this.sink.discard?.(frame);
      return;
    }
    try {
      this.sink.draw(frame);
    } catch (err) {
      this.sink.fail?.(seq, err);
    }
    this.sink.ack(seq, this.now() - receivedAt);
  }

  /**
   * Forget every frame not drawn yet: they belong to a connection that is gone, whose
   * sequence numbers mean nothing to the next one (which starts with a keyframe).
   */
  reset(): void {
    this.epoch++;
  }

  /** Resolves when everything pushed so far has been drawn or dropped (for tests). */
  idle(): Promise<void> {
    return this.tail;
  }
}
