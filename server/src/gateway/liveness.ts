import type { Logger } from 'pino';
import { gatewayMetrics } from './metrics.js';
import type { VdiSocket } from './viewer-socket.js';

/** See GatewayOptions.viewerTimeoutMs. Socket.IO alone notices a silent peer after ~45 s. */
export const VIEWER_TIMEOUT_MS = 20_000;
/** Liveness checks per viewer timeout: a viewer is dropped after this many silent periods. */
const LIVENESS_PERIODS = 4;

/**
 * Socket.IO's ping interval for a viewer timeout: a live viewer answers a ping in every
 * liveness period, so an idle viewer that is there is never dropped.
 */
export function pingIntervalFor(timeoutMs: number): number {
  return Math.min(25_000, Math.floor(timeoutMs / LIVENESS_PERIODS));
}

/**
 * Drops viewers not heard from (no ack, input, heartbeat or Socket.IO pong) for the viewer
 * timeout: a silent network black hole, a frozen tab. Counted in check periods rather than
 * clock readings, so the bound holds however the clock is moved; the drop comes between the
 * timeout and 1.25 times it.
 */
export class Liveness {
  /** per socket: heard from since the last check, and checks in a row without */
  private readonly state = new WeakMap<VdiSocket, { heard: boolean; silent: number }>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly sockets: () => Iterable<VdiSocket>,
    private readonly timeoutMs: number,
    private readonly log: Logger,
    /** for the log line: the session a dropped socket was attached to */
    private readonly sessionOf: (socket: VdiSocket) => string | undefined,
  ) {
    this.timer = setInterval(() => this.check(), timeoutMs / LIVENESS_PERIODS);
    this.timer.unref();
  }

  /** Start watching a socket: anything from it (acks, input, heartbeats, pongs) shows it is there. */
  watch(socket: VdiSocket): void {
    const live = { heard: true, silent: 0 };
    this.state.set(socket, live);
    socket.conn.on('packet', () => {
      live.heard = true;
    });
  }

  close(): void {
    clearInterval(this.timer);
  }

  private check(): void {
    for (const s of this.sockets()) {
      const live = this.state.get(s);
      if (!live) continue;
      if (live.heard) {
        live.heard = false;
        live.silent = 0;
        continue;
      }
      if (++live.silent < LIVENESS_PERIODS) continue;
      gatewayMetrics.silentViewers.inc();
      this.log.warn(
        { user: s.data.user.username, sessionId: this.sessionOf(s), timeoutMs: this.timeoutMs },
        'viewer not heard from; dropping it',
      );
      // close the transport without a disconnect packet: should the network come back, the
      // viewer sees a dropped connection and reconnects, not "closed on purpose"
      s.conn.close(true);
    }
  }
}
