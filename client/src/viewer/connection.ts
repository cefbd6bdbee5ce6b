/**
 * The viewer's Socket.IO connection: attach on every (re)connect, the connection state the
 * page shows, and the rule that input is sent only while attached; never buffered across
 * a disconnect and replayed later.
 */
import type {
  AttachRequest,
  AttachResult,
  ClientToServerEvents,
  CursorMsg,
  ErrorResult,
  ServerStatusMsg,
  ServerToClientEvents,
  SessionStatusMsg,
  SessionWarningMsg,
  ShadowMsg,
} from '@vdi/shared';
import { HEARTBEAT } from '@vdi/shared';
import type { ManagerOptions, Socket, SocketOptions } from 'socket.io-client';
import { toBytes } from './cursor';
import { vdiParser } from '@vdi/shared';

export type ViewerSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/**
 * `document.body.dataset.viewer` values. 'unstable': connected, but nothing has come from the
 * server for a while (see HEARTBEAT); 'disconnected': the server closed us on purpose.
 */
export type ViewerState =
  'connecting' | 'connected' | 'unstable' | 'reconnecting' | 'disconnected' | 'ended';

/** Liveness timings, ms (see HEARTBEAT in the protocol package). */
export interface HeartbeatTimings {
  pingAfterMs: number;
  unstableMs: number;
  lostMs: number;
}

export interface ConnectionOptions {
  /** @default HEARTBEAT */
  heartbeat?: HeartbeatTimings;
  /** a monotonic ms clock @default performance.now */
  now?: () => number;
}

/** Longest wait the server may ask for before reconnecting after a restart, ms. */
const MAX_RESTART_WAIT_MS = 30_000;
const RESTARTING_MESSAGE = 'The server is restarting. Reconnecting by itself…';

export interface StateDetail {
  /** what to tell the user */
  message?: string;
  /** server error code (SESSION_ENDED, FORBIDDEN, …) */
  code?: string;
  /** reconnect attempt number */
  attempt?: number;
}

export interface ConnectionListener {
  state(state: ViewerState, detail: StateDetail): void;
  attached(res: AttachResult): void;
  /** the attachment is gone: frames in flight are void, pressed keys are forgotten */
  detached(): void;
  frame(data: Uint8Array): void;
  cursor(msg: CursorMsg): void;
  clipboard(text: string): void;
  session(msg: SessionStatusMsg): void;
  notice(msg: { text: string; from: string }): void;
  shadow(msg: ShadowMsg): void;
  /** a log-off is coming (idle or maximum session length) */
  warning(msg: SessionWarningMsg): void;
  /** the handshake or attach says "not signed in" */
  unauthorized(): void;
}

/** Options for io(); exported so the page and the tests agree. */
export const SOCKET_OPTIONS: Partial<ManagerOptions & SocketOptions> = {
  // one binary WebSocket message per frame (the server uses the same parser)
  parser: vdiParser,
  // WebSocket only: no long-polling fallback, binary frames straight through
  transports: ['websocket'],
  reconnection: true,
  /** first reconnect delay, ms; doubles up to reconnectionDelayMax */
  reconnectionDelay: 500,
  /** longest reconnect delay, ms */
  reconnectionDelayMax: 5000,
  randomizationFactor: 0.5,
  // listeners are in place before the first connect (ViewerConnection.start)
  autoConnect: false,
};

/** How long the attach answer may take before the viewer reconnects, ms. */
export const ATTACH_TIMEOUT_MS = 15_000;
/** Wait before trying again after the server refused the handshake or asked to retry, ms. */
export const RETRY_DELAY_MS = 3_000;

/** Attach refusals worth retrying (the desktop is still starting, a node is busy). */
const RETRYABLE = /STARTING|NOT_READY|UNAVAILABLE|BUSY|RETRY|TIMEOUT/;
const UNAUTHORIZED = /UNAUTHORI[SZ]ED|UNAUTHENTICATED|NOT_AUTHENTICATED|NOT_SIGNED_IN|^401$/i;

export class ViewerConnection {
  private attachedNow = false;
  private everAttached = false;
  private finished = false;
  private viewOnly: boolean;
  /** bumped per attach attempt and per disconnect, so a late answer cannot act */
  private generation = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private lastSessionReason: string | undefined;
  private current: ViewerState = 'connecting';
  private readonly heartbeat: HeartbeatTimings;
  private readonly now: () => number;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  /** when anything last came from the server, and when we last asked */
  private lastHeard = 0;
  private lastPing = 0;
  /** the server said it is restarting: say so until we are back */
  private serverRestarting = false;

  constructor(
    private readonly socket: ViewerSocket,
    private readonly request: AttachRequest,
    private readonly on: ConnectionListener,
    opts: ConnectionOptions = {},
  ) {
    this.viewOnly = request.shadow === true;
    this.heartbeat = opts.heartbeat ?? HEARTBEAT;
    this.now = opts.now ?? (() => performance.now());
    socket.on('connect', () => {
      this.startHeartbeat();
      this.attach();
    });
    socket.on('disconnect', (reason) => this.onDisconnect(reason));
    socket.on('connect_error', (err) => this.onConnectError(err));
    socket.io.on('reconnect_attempt', (attempt) => {
      if (!this.finished)
        this.setState(this.everAttached ? 'reconnecting' : 'connecting', {
          attempt,
          ...(this.serverRestarting ? { message: RESTARTING_MESSAGE } : {}),
        });
    });
    // every packet from the server (frames, answers, Socket.IO's pings) shows the link works
    socket.io.on('packet', () => this.heard());
    socket.io.on('ping', () => this.heard());
    socket.on('server', (msg) => this.onServer(msg));
    // Frames count from the moment attach is sent: the first keyframe may overtake the
    // attach answer, and every frame must be acknowledged for flow control to go on.
    socket.on('frame', (data) => {
      if (!this.finished) on.frame(toBytes(data));
    });
    socket.on('cursor', (msg) => on.cursor(msg));
    socket.on('clipboard', (msg) => {
      if (typeof msg?.text === 'string') on.clipboard(msg.text);
    });
    socket.on('session', (msg) => this.onSession(msg));
    socket.on('notice', (msg) => on.notice(msg));
    socket.on('shadow', (msg) => on.shadow(msg));
    socket.on('warning', (msg) => {
      if (typeof msg?.inMs === 'number') on.warning(msg);
    });
    socket.on('error', (msg) => console.warn('viewer: server reported', msg?.code, msg?.message));
  }

  get state(): ViewerState {
    return this.current;
  }

  /** True while input may be sent: attached, connected, not view-only. */
  get interactive(): boolean {
    return this.attachedNow && this.socket.connected && !this.viewOnly && !this.finished;
  }

  start(): void {
    if (this.finished) return; // closed before it started (the page went away)
    this.setState('connecting', {});
    this.socket.connect();
  }

  /** After a server-side disconnect ('disconnected' state), the user asked to come back. */
  reconnect(): void {
    if (this.finished || this.socket.connected) return;
    this.setState('reconnecting', {});
    this.socket.connect();
  }

  /** Leave for good (Disconnect button, page left). The desktop keeps running. */
  close(): void {
    this.finished = true;
    clearTimeout(this.retryTimer);
    this.stopHeartbeat();
    this.socket.disconnect();
  }

  /** The session was ended from this page (Log off): show the end screen, stop reconnecting. */
  ended(message?: string): void {
    this.end({ code: 'SESSION_ENDED', message });
  }

  // ── input: dropped unless interactive (Socket.IO would buffer it while disconnected) ──

  key(keysym: number, down: boolean): boolean {
    if (!this.interactive) return false;
    this.socket.emit('key', { keysym, down });
    return true;
  }

  pointer(x: number, y: number, buttons: number): boolean {
    if (!this.interactive) return false;
    this.socket.emit('pointer', { x, y, buttons });
    return true;
  }

  clipboard(text: string): boolean {
    if (!this.interactive) return false;
    this.socket.emit('clipboard', { text });
    return true;
  }

  /** Ask the desktop for a new size (fit to window); the server clamps it to the pool's range. */
  resize(width: number, height: number): boolean {
    if (!this.interactive) return false;
    this.socket.emit('resize', { width, height });
    return true;
  }

  /** Acknowledge a drawn frame (flow control). Meaningless after a disconnect, so dropped. */
  ack(seq: number, renderMs: number): void {
    if (!this.socket.connected || this.finished) return;
    const ms = Math.min(600_000, Math.max(0, Math.round(renderMs * 10) / 10));
    this.socket.emit('ack', { seq, renderMs: ms });
  }

  /** A video decoder failed: the server sends images from now on (and at every attach after). */
  videoFailed(regionId: number, reason: string): void {
    this.request.video = [];
    if (this.socket.connected && !this.finished)
      this.socket.emit('videoError', { regionId, reason });
  }

  /** Ask for a full repaint (a rect could not be decoded). */
  refresh(): void {
    if (this.socket.connected && !this.finished) this.socket.emit('refresh');
  }

  // ── lifecycle ──

  private attach(): void {
    if (this.finished) return;
    const generation = ++this.generation;
    this.socket.timeout(ATTACH_TIMEOUT_MS).emit('attach', this.request, (err, res) => {
      if (generation !== this.generation || this.finished) return; // an old connection's answer
      if (err) {
        this.retry({ message: 'The desktop did not answer in time. Trying again…' }, 0);
        return;
      }
      if (res.ok) {
        this.attachedNow = true;
        this.everAttached = true;
        this.serverRestarting = false;
        this.viewOnly = res.viewOnly || this.request.shadow === true;
        this.on.attached(res);
        this.setState('connected', {});
      } else {
        this.refused(res);
      }
    });
  }

  private refused(res: ErrorResult): void {
    if (UNAUTHORIZED.test(res.code)) {
      this.finish();
      this.on.unauthorized();
    } else if (res.code === 'SESSION_ENDED') {
      this.end({ code: res.code, message: res.message });
    } else if (RETRYABLE.test(res.code)) {
      this.retry({ code: res.code, message: res.message }, RETRY_DELAY_MS);
    } else {
      this.end({ code: res.code, message: res.message });
    }
  }

  /** Drop this connection and make a new one after `delayMs`. */
  private retry(detail: StateDetail, delayMs: number): void {
    this.generation++;
    this.detach();
    this.setState(this.everAttached ? 'reconnecting' : 'connecting', detail);
    this.socket.disconnect();
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.finished) this.socket.connect();
    }, delayMs);
  }

  private onDisconnect(reason: string): void {
    this.generation++;
    this.stopHeartbeat();
    this.detach();
    if (this.finished || reason === 'io client disconnect') return;
    if (reason === 'io server disconnect') {
      // Closed on purpose (an administrator's Disconnect, the session opened elsewhere):
      // coming straight back would undo it, so the user decides.
      this.setState('disconnected', {
        message:
          this.lastSessionReason ?? 'The server closed this connection. The desktop keeps running.',
      });
      return;
    }
    this.setState(this.everAttached ? 'reconnecting' : 'connecting', {});
  }

  private onConnectError(err: Error & { data?: { code?: unknown; message?: unknown } }): void {
    if (this.finished) return;
    const code = typeof err.data?.code === 'string' ? err.data.code : err.message;
    if (this.socket.active) {
      // transport trouble: the manager retries with backoff
      this.setState(this.everAttached ? 'reconnecting' : 'connecting', {
        message: this.serverRestarting ? RESTARTING_MESSAGE : 'Cannot reach the server.',
      });
      return;
    }
    // refused by the server's handshake middleware: no automatic retry from Socket.IO
    if (UNAUTHORIZED.test(code) || /not signed in|unauthori[sz]ed/i.test(err.message)) {
      this.finish();
      this.on.unauthorized();
      return;
    }
    this.setState(this.everAttached ? 'reconnecting' : 'connecting', {
      code,
      message: err.message,
    });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.finished) this.socket.connect();
    }, RETRY_DELAY_MS);
  }

  private onSession(msg: SessionStatusMsg): void {
    if (msg.state === 'ended') {
      this.end({ code: 'SESSION_ENDED', message: msg.reason });
      return;
    }
    if (msg.state === 'disconnected' && msg.reason) this.lastSessionReason = msg.reason;
    this.on.session(msg);
  }

  /**
   * The server is going away (SIGTERM, a deploy). Let go now and come back after the wait it
   * asked for (jittered per viewer, so a restart is not met by every viewer at once); if it
   * is not back yet, Socket.IO's reconnect backoff carries on from there.
   */
  private onServer(msg: ServerStatusMsg): void {
    if (this.finished || msg?.state !== 'restarting') return;
    const wait = Math.min(MAX_RESTART_WAIT_MS, Math.max(0, Number(msg.retryAfterMs) || 0));
    this.serverRestarting = true;
    this.generation++;
    this.stopHeartbeat();
    this.detach();
    this.setState(this.everAttached ? 'reconnecting' : 'connecting', {
      code: 'SERVER_RESTARTING',
      message: RESTARTING_MESSAGE,
    });
    this.socket.disconnect();
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.finished) this.socket.connect();
    }, wait);
  }

  // ── liveness ──

  private heard(): void {
    this.lastHeard = this.now();
    if (this.current === 'unstable' && !this.finished) this.setState('connected', {});
  }

  private startHeartbeat(): void {
    this.stopHeartbeat();
    this.lastHeard = this.now();
    this.lastPing = this.lastHeard;
    const period = Math.max(50, Math.min(500, this.heartbeat.pingAfterMs / 2));
    this.heartbeatTimer = setInterval(() => this.checkHeartbeat(), period);
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  private checkHeartbeat(): void {
    if (this.finished || !this.socket.connected) return;
    const now = this.now();
    const silent = now - this.lastHeard;
    if (silent >= this.heartbeat.lostMs) {
      // a black hole: Socket.IO would notice only after its own ping timeout (~45 s). Drop
      // the connection; the manager reconnects with backoff and we attach afresh.
      this.stopHeartbeat();
      this.socket.io.engine?.close();
      return;
    }
    if (silent >= this.heartbeat.unstableMs && this.current === 'connected') {
      this.setState('unstable', {
        message: 'Connection unstable. Waiting for the network…',
      });
    }
    if (silent >= this.heartbeat.pingAfterMs && now - this.lastPing >= this.heartbeat.pingAfterMs) {
      this.lastPing = now;
      this.socket.emit('heartbeat', () => this.heard());
    }
  }

  private detach(): void {
    this.attachedNow = false;
    this.on.detached();
  }

  private end(detail: StateDetail): void {
    if (this.finished) return;
    this.finish();
    this.setState('ended', detail);
  }

  private finish(): void {
    this.finished = true;
    this.stopHeartbeat();
    this.generation++;
    clearTimeout(this.retryTimer);
    this.detach();
    this.socket.disconnect();
  }

  private setState(state: ViewerState, detail: StateDetail): void {
    this.current = state;
    this.on.state(state, detail);
  }
}
