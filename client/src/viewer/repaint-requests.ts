/**
 * Asks the server for a full repaint (a keyframe) after a frame or rect could not be decoded.
 * One failure tends to come with more (a broken zlib stream fails every rect until the
 * keyframe restarts it), and one request repairs them all, so requests are throttled.
 */
import { browserClock, type Clock } from '../clock';

/** Least time between two repaint requests, ms. */
export const REPAINT_THROTTLE_MS = 2000;

export class RepaintRequests {
  private lastAt = -Infinity;

  constructor(
    /** sends the request to the server */
    private readonly send: () => void,
    private readonly clock: Clock = browserClock,
  ) {}

  /** A decode failure (`why` is logged): ask for a repaint unless one was asked for lately. */
  request(why: unknown): void {
    console.warn('viewer: repaint requested after a decode failure', why);
    const now = this.clock.now();
    if (now - this.lastAt < REPAINT_THROTTLE_MS) return;
    this.lastAt = now;
    this.send();
  }
}
