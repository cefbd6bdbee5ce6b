import type { Logger } from 'pino';
import { BrokerError } from '../broker/errors.js';
import { rooms, type VdiSocket } from './viewer-socket.js';

/**
 * Waits before each try to attach a viewer again after its desktop's stream went away, ms.
 * The last repeats without end (capped backoff): a desktop that stopped answering (a frozen
 * Xvnc, a paused VM) may come back at any time, and while its process lives the broker keeps
 * it; when it dies, the broker ends the session and the retries end with it.
 */
export const REATTACH_DELAYS_MS: readonly number[] = [300, 1000, 2000, 4000, 8000, 15_000];

/** Attach refusals after which trying again cannot help. */
const FINAL_ATTACH_CODES = new Set([
  'SESSION_ENDED',
  'SESSION_NOT_FOUND',
  'FORBIDDEN',
  'NOT_ENTITLED',
]);

/** A socket whose desktop's stream went away, trying to attach to its session again. */
interface Waiting {
  sessionId: string;
  shadow: boolean;
  /** tries that have failed so far */
  attempt: number;
  timer: NodeJS.Timeout | undefined;
}

export interface ReattachCalls {
  attach(socket: VdiSocket, sessionId: string, shadow: boolean): Promise<unknown>;
  /** the socket gave up on the session: it no longer views it */
  left(socket: VdiSocket, sessionId: string, shadow: boolean, reason: string): void;
}

/**
 * Attaches sockets again after their desktop's stream went away (restart, lost or frozen RFB
 * link), with capped backoff, for as long as the socket stays and the session lives. The
 * viewer hears of every failed try; the session stays active meanwhile, since someone is
 * watching and waiting. Ends when the session has ended (the viewer is told why), when the
 * socket leaves, or when the viewer attaches by itself.
 */
export class Reattacher {
  /** sockets trying to attach again; they count as viewers, so their session stays active */
  private readonly waiting = new Map<VdiSocket, Waiting>();

  constructor(
    private readonly calls: ReattachCalls,
    private readonly log: Logger,
    private readonly delaysMs: readonly number[] = REATTACH_DELAYS_MS,
  ) {}

  start(socket: VdiSocket, sessionId: string, shadow: boolean): void {
    this.stop(socket);
    const w: Waiting = { sessionId, shadow, attempt: 0, timer: undefined };
    this.waiting.set(socket, w);
    this.schedule(socket, w);
  }

  /** No longer waiting; it leaves the viewers' room (attach joins it again when it is in). */
  stop(socket: VdiSocket): void {
    const w = this.waiting.get(socket);
    if (!w) return;
    clearTimeout(w.timer);
    this.waiting.delete(socket);
    void socket.leave(rooms.viewers(w.sessionId));
  }

  stopAll(): void {
    for (const s of this.waiting.keys()) this.stop(s);
  }

  /** the session a socket waits for, if it does */
  of(socket: VdiSocket): { sessionId: string; shadow: boolean } | undefined {
    return this.waiting.get(socket);
  }

  /** Does a connected socket other than `except` wait to view this session as its user? */
  hasViewerWaiting(sessionId: string, except: VdiSocket): boolean {
    for (const [s, w] of this.waiting)
      if (s !== except && w.sessionId === sessionId && !w.shadow && s.connected) return true;
    return false;
  }

  private delay(attempt: number): number {
    return this.delaysMs[Math.min(attempt, this.delaysMs.length - 1)] ?? 1000;
  }

  private schedule(socket: VdiSocket, w: Waiting): void {
    w.timer = setTimeout(() => {
      w.timer = undefined;
      if (this.waiting.get(socket) !== w) return;
      if (!socket.connected) return this.stop(socket);
      this.calls.attach(socket, w.sessionId, w.shadow).then(
        () => {
          if (this.waiting.get(socket) === w) this.waiting.delete(socket);
          if (w.attempt > 0)
            this.log.info(
              { sessionId: w.sessionId, tries: w.attempt + 1 },
              'viewer attached again',
            );
          socket.emit('session', { state: 'active' });
        },
        (err: unknown) => {
          if (this.waiting.get(socket) !== w) return; // it attached by itself, or left
          if (err instanceof BrokerError && FINAL_ATTACH_CODES.has(err.code)) {
            this.waiting.delete(socket);
            socket.emit('session', { state: 'ended', reason: err.message });
            this.calls.left(socket, w.sessionId, w.shadow, `cannot attach again: ${err.message}`);
            return;
          }
          w.attempt++;
          const inMs = this.delay(w.attempt);
          const why = err instanceof Error ? err.message : String(err);
          this.log.warn(
            { sessionId: w.sessionId, attempt: w.attempt, nextInMs: inMs, reason: why },
            'viewer could not attach again; retrying',
          );
          socket.emit('session', {
            state: 'desktop-unresponsive',
            reason: why,
            retry: { attempt: w.attempt, inMs },
          });
          this.schedule(socket, w);
        },
      );
    }, this.delay(w.attempt));
    w.timer.unref();
  }
}
