import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type { RequestHandler } from 'express';
import { Server, type Socket } from 'socket.io';
import type { Logger } from 'pino';
import type { z } from 'zod';
import {
  AckMsg,
  AttachRequest,
  ClipboardMsg,
  KeyEventMsg,
  MAX_CLIENT_MESSAGE_BYTES,
  PointerEventMsg,
  ResizeRequest,
  vdiParser,
  type ClientToServerEvents,
  type ServerToClientEvents,
} from '@vdi/shared';
import type { Clock } from '../clock.js';
import type { Broker } from '../broker/broker.js';
import { BrokerError } from '../broker/errors.js';
import { StreamManager, type StreamManagerOptions } from '../stream/stream-manager.js';
import {
  poolRfbLimits,
  DEFAULT_DESKTOP_LIMITS,
  type DesktopLimitDefaults,
} from '../stream/limits.js';
import { RfbError, viewerReason } from '../rfb/errors.js';
import type { RfbLimits } from '../rfb/types.js';
import type { DesktopStream } from '../stream/desktop-stream.js';
import { Viewer } from '../stream/viewer.js';
import type { AuthedUser } from '../auth/index.js';
import type { RfbEndpoint } from '../rfb/endpoint.js';
import { gatewayMetrics } from './metrics.js';

/** What travels with a socket. Plain data only: the Redis adapter serialises it across nodes. */
interface SocketData {
  user: AuthedUser;
  httpSessionId: string;
  ip: string;
  /** token bucket for input events */
  bucket: { tokens: number; at: number };
  /** token bucket for input bytes (a few huge clipboard events must not pass for few events) */
  byteBucket: { tokens: number; at: number };
}

/** A socket attached to a session: its viewer of the desktop's stream (this node only). */
interface Attachment {
  sessionId: string;
  desktopId: string;
  shadow: boolean;
  viewer: Viewer;
  stream: DesktopStream;
  /** the pool's limits for this desktop's link */
  limits: RfbLimits;
}

/** Desktop clipboard on its way to one viewer: at most one in the socket, the newest waiting. */
interface ClipboardOut {
  pending: string | undefined;
  waitingForDrain: boolean;
}

/** A socket whose desktop's stream went away, trying to attach to its session again. */
interface Waiting {
  sessionId: string;
  shadow: boolean;
  /** tries that have failed so far */
  attempt: number;
  timer: NodeJS.Timeout | undefined;
}

type VdiSocket = Socket<
  ClientToServerEvents,
  ServerToClientEvents,
  Record<string, never>,
  SocketData
>;

export interface GatewayOptions {
  maxFramesInFlight: number;
  allowedOrigins: string[];
  /** input events per second a socket may send (burst is the same number) @default 600 */
  inputRate?: number;
  /**
   * What a desktop may send and be sent (config.desktopLimits): clipboard and framebuffer
   * defaults (pools override them), input bytes per second per viewer, the RFB links' send
   * bound and timeouts. @default DEFAULT_DESKTOP_LIMITS and the RFB client's defaults
   */
  desktopLimits?: DesktopLimitDefaults &
    Partial<{
      inputBytesPerSec: number;
      sendBufferBytes: number;
      sendStallMs: number;
      messageTimeoutMs: number;
    }>;
  /** the desktops' RFB links: bounds, timeouts, linger */
  streams?: StreamManagerOptions;
  /**
   * Waits before each try to attach a viewer again after its desktop's stream went away, ms;
   * the last one repeats for as long as the session lives and the viewer stays.
   * @default REATTACH_DELAYS_MS
   */
  reattachDelaysMs?: readonly number[];
  /**
   * A viewer heard nothing from (no ack, input, heartbeat or Socket.IO pong) for this long is
   * dropped, ms; the drop comes between this and 1.25 times this. Socket.IO pings every
   * quarter of it, so an idle viewer that is alive always answers in time.
   * @default VIEWER_TIMEOUT_MS
   */
  viewerTimeoutMs?: number;
  /** after SIGTERM, viewers wait between these before reconnecting, ms (spreads the herd) @default [1000, 3000] */
  restartRetryMs?: readonly [number, number];
}

/** See GatewayOptions.viewerTimeoutMs. Socket.IO alone notices a silent peer after ~45 s. */
export const VIEWER_TIMEOUT_MS = 20_000;
/** Liveness checks per viewer timeout: a viewer is dropped after this many silent periods. */
const LIVENESS_PERIODS = 4;

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

/** Input events a socket may send per second before they are dropped. */
const DEFAULT_INPUT_RATE = 600;
/** Input bytes a socket may send per second before events are dropped. */
const DEFAULT_INPUT_BYTES_PER_SEC = 4 * 1024 * 1024;
/** What an input event costs of the byte budget: the RFB message it becomes, bytes. */
const INPUT_COST = { key: 8, pointer: 6, resize: 24, clipboardHeader: 8 } as const;

/**
 * Socket.IO for viewers: attach to a session, frames out, input and acks in. Every event is
 * validated; a bad one gets an `error` event and changes nothing. Session auth is the same
 * express-session cookie as the REST API.
 */
export class Gateway {
  readonly io: Server<
    ClientToServerEvents,
    ServerToClientEvents,
    Record<string, never>,
    SocketData
  >;
  readonly streams: StreamManager;
  private readonly attachments = new WeakMap<VdiSocket, Attachment>();
  private readonly clipboardOut = new WeakMap<VdiSocket, ClipboardOut>();
  /** sockets trying to attach again; they count as viewers, so their session stays active */
  private readonly waiting = new Map<VdiSocket, Waiting>();
  /** per socket: heard from since the last liveness check, and checks in a row without */
  private readonly liveness = new WeakMap<VdiSocket, { heard: boolean; silent: number }>();
  private readonly livenessTimer: NodeJS.Timeout;
  /** SIGTERM: no new viewers; the ones here were told to come back */
  private draining = false;

  constructor(
    server: http.Server,
    private readonly broker: Broker,
    private readonly clock: Clock,
    private readonly log: Logger,
    middlewares: RequestHandler[],
    private readonly opts: GatewayOptions,
  ) {
    this.io = new Server(server, {
      transports: ['websocket'],
      // one binary WebSocket message per frame; see shared/src/wire.ts
      parser: vdiParser,
      perMessageDeflate: false,
      maxHttpBufferSize: MAX_CLIENT_MESSAGE_BYTES,
      serveClient: false,
      // a live viewer answers a ping in every liveness period (see checkLiveness)
      pingInterval: Math.min(
        25_000,
        Math.floor((opts.viewerTimeoutMs ?? VIEWER_TIMEOUT_MS) / LIVENESS_PERIODS),
      ),
      // No connection-state recovery: it would buffer every frame and skip auth on reconnect.
      // A reconnect attaches afresh and gets a keyframe.
      allowRequest: (req, cb) => {
        // refused while draining: the browser's reconnect backoff brings it to the next
        // server process (or another node) instead
        if (this.draining) return cb('the server is restarting', false);
        const ok = this.originAllowed(req.headers.origin, req.headers.host);
        if (!ok)
          this.log.warn(
            { origin: req.headers.origin, host: req.headers.host },
            'socket handshake refused: cross-origin',
          );
        cb(ok ? null : 'origin not allowed', ok);
      },
    });
    for (const m of middlewares) this.io.engine.use(m);
    this.io.use((socket, next) => {
      const req = socket.request as typeof socket.request & {
        user?: AuthedUser;
        sessionID?: string;
        ip?: string;
      };
      if (!req.user) return next(new Error('unauthorized: sign in first'));
      socket.data.user = req.user;
      socket.data.httpSessionId = req.sessionID ?? '';
      socket.data.ip = socket.handshake.address;
      socket.data.bucket = { tokens: opts.inputRate ?? DEFAULT_INPUT_RATE, at: this.clock.now() };
      socket.data.byteBucket = {
        tokens: this.inputBytesPerSec,
        at: this.clock.now(),
      };
      next();
    });
    this.io.on('connection', (s) => this.onConnection(s));
    const viewerTimeoutMs = opts.viewerTimeoutMs ?? VIEWER_TIMEOUT_MS;
    this.livenessTimer = setInterval(
      () => this.checkLiveness(viewerTimeoutMs),
      viewerTimeoutMs / LIVENESS_PERIODS,
    );
    this.livenessTimer.unref();

    const dl = opts.desktopLimits;
    this.streams = new StreamManager(
      clock,
      log,
      {
        cursor: (desktopId, shape) => {
          this.io.to(`desktop:${desktopId}`).emit('cursor', {
            width: shape.width,
            height: shape.height,
            hotX: shape.hotX,
            hotY: shape.hotY,
            png: shape.png,
          });
        },
        clipboard: (desktopId, text) => {
          // only the session's own viewers get the desktop's clipboard, never shadows
          for (const s of this.socketsOfDesktop(desktopId))
            if (!this.attachments.get(s)!.shadow) this.sendClipboard(s, text);
        },
        clipboardDropped: (desktopId, length, limit) => {
          for (const s of this.socketsOfDesktop(desktopId))
            if (!this.attachments.get(s)!.shadow)
              this.fail(
                s,
                'CLIPBOARD_TOO_LARGE',
                `the desktop's clipboard (${length} bytes) is larger than this pool allows (${limit} bytes); it was not copied`,
              );
        },
        lost: (desktopId, detail, error) => {
          // the viewer hears our words for it, never the server's (they are in the log)
          const reason = error
            ? viewerReason(error).message
            : 'the connection to the desktop closed';
          this.log.info({ desktopId, detail }, 'desktop link lost; viewers told');
          this.io.to(`desktop:${desktopId}`).emit('session', { state: 'desktop-lost', reason });
          // they stay in their session's room: if the desktop is gone for good, the session
          // ends and they hear why (a crashed VM shows first as a lost VNC connection);
          // if it is still there, they attach again by themselves
          for (const s of this.socketsOfDesktop(desktopId)) {
            const a = this.attachments.get(s)!;
            this.detach(s, 'desktop connection lost', { keepSessionRoom: true, reattaching: true });
            this.reattach(s, a.sessionId, a.shadow);
          }
          void this.broker.checkDesktopsSoon([desktopId]);
        },
      },
      {
        ...opts.streams,
        rfb: {
          ...(dl && {
            sendBufferBytes: dl.sendBufferBytes,
            sendStallMs: dl.sendStallMs,
            messageTimeoutMs: dl.messageTimeoutMs,
          }),
          ...opts.streams?.rfb,
        },
      },
    );

    // Room operations reach sockets on every node (with the Redis adapter), not only ours.
    broker.on('session-ended', (sessionId, reason) => {
      this.io.to(`session:${sessionId}`).emit('session', { state: 'ended', reason });
      this.io.in(`session:${sessionId}`).disconnectSockets(true);
    });
    broker.on('session-disconnect', (sessionId) => {
      this.io.in(`viewers:${sessionId}`).disconnectSockets(true);
    });
    broker.on('desktop-health', (desktopId, state, reason) => {
      const msg =
        state === 'running'
          ? { state: 'active' as const }
          : {
              state:
                state === 'dead' ? ('desktop-lost' as const) : ('desktop-unresponsive' as const),
              ...(reason ? { reason } : {}),
            };
      this.io.to(`desktop:${desktopId}`).emit('session', msg);
    });
    broker.on('desktop-restarting', (desktopId) => {
      // this node's viewers let go of the old stream and attach again (with backoff) once the
      // desktop is back; other nodes lose their RFB connection to it and do the same via `lost`
      const sockets = this.socketsOfDesktop(desktopId).map(
        (s) => [s, this.attachments.get(s)!] as const,
      );
      this.streams.drop(desktopId, 'desktop restarting');
      for (const [s, a] of sockets) {
        this.detach(s, 'desktop restarted', { keepSessionRoom: true, reattaching: true });
        this.reattach(s, a.sessionId, a.shadow);
      }
    });
  }

  private originAllowed(origin: string | undefined, host: string | undefined): boolean {
    if (!origin) return true; // not a browser: no ambient-cookie risk (CSWSH needs a browser)
    try {
      const u = new URL(origin);
      if (host && u.host === host) return true;
      return this.opts.allowedOrigins.includes(u.origin);
    } catch {
      return false;
    }
  }

  private sockets(): VdiSocket[] {
    return [...this.io.of('/').sockets.values()];
  }

  private socketsOfSession(sessionId: string): VdiSocket[] {
    return this.sockets().filter((s) => this.attachments.get(s)?.sessionId === sessionId);
  }

  private socketsOfDesktop(desktopId: string): VdiSocket[] {
    return this.sockets().filter((s) => this.attachments.get(s)?.desktopId === desktopId);
  }

  /** sign-out: close the sockets that signed in with that browser session */
  closeHttpSession(httpSessionId: string): void {
    this.io.in(`http:${httpSessionId}`).disconnectSockets(true);
  }

  /** account disabled, deleted or its password/role changed: close all its sockets */
  closeUser(userId: string): void {
    this.io.in(`user:${userId}`).disconnectSockets(true);
  }

  /** viewer counts, bandwidth and frame rate of this node's viewers of a session */
  sessionStats(sessionId: string): { viewers: number; shadows: number; kbps: number; fps: number } {
    let viewers = 0;
    let shadows = 0;
    let kbps = 0;
    let fps = 0;
    for (const s of this.socketsOfSession(sessionId)) {
      const a = this.attachments.get(s)!;
      if (a.shadow) shadows++;
      else {
        viewers++;
        const r = a.viewer.rates();
        kbps += r.kbps;
        fps = Math.max(fps, r.fps);
      }
    }
    return { viewers, shadows, kbps, fps };
  }

  /** an admin's message to the user's viewers, on whichever node they are; resolves to how many */
  async sendMessage(sessionId: string, text: string, from: string): Promise<number> {
    const room = `viewers:${sessionId}`;
    this.io.to(room).emit('notice', { text, from });
    return (await this.io.in(room).fetchSockets()).length;
  }

  async thumbnail(desktopId: string, endpoint: RfbEndpoint): Promise<Buffer> {
    // the pool's limits, so a link opened for a thumbnail accepts what its viewers would
    const desktop = await this.broker.desktop(desktopId);
    const pool = desktop && (await this.broker.pool(desktop.pool_id).catch(() => undefined));
    return this.streams.thumbnail(
      desktopId,
      endpoint,
      pool ? this.limitsOf(pool.template) : undefined,
    );
  }

  private get inputBytesPerSec(): number {
    return this.opts.desktopLimits?.inputBytesPerSec ?? DEFAULT_INPUT_BYTES_PER_SEC;
  }

  /** The RFB limits of a pool's desktops (its template's fields, else the server's defaults). */
  private limitsOf(template: string): RfbLimits {
    return poolRfbLimits(template, this.opts.desktopLimits ?? DEFAULT_DESKTOP_LIMITS);
  }

  /**
   * Desktop clipboard to one viewer. A viewer whose socket has not taken the previous
   * message yet (it does not read) gets only the newest text once it does: never more than
   * one clipboard per viewer waits in memory, however often the desktop's clipboard changes.
   */
  private sendClipboard(socket: VdiSocket, text: string): void {
    let out = this.clipboardOut.get(socket);
    if (!out) {
      out = { pending: undefined, waitingForDrain: false };
      this.clipboardOut.set(socket, out);
    }
    out.pending = text;
    this.flushClipboard(socket, out);
  }

  private flushClipboard(socket: VdiSocket, out: ClipboardOut): void {
    if (out.pending === undefined || !socket.connected) return;
    const transport = socket.conn.transport;
    if (!transport.writable) {
      // a send is still on its way (into a full socket, if the viewer does not read)
      if (!out.waitingForDrain) {
        out.waitingForDrain = true;
        transport.once('drain', () => {
          out.waitingForDrain = false;
          this.flushClipboard(socket, out);
        });
      }
      return;
    }
    const text = out.pending;
    out.pending = undefined;
    socket.emit('clipboard', { text });
  }

  private fail(socket: VdiSocket, code: string, message: string): void {
    socket.emit('error', { code, message });
  }

  /** Validate one event's payload; answer a bad one with an error and drop it. */
  private valid<T extends z.ZodType>(
    socket: VdiSocket,
    schema: T,
    event: string,
    payload: unknown,
  ): z.infer<T> | undefined {
    const r = schema.safeParse(payload);
    if (r.success) return r.data;
    gatewayMetrics.badEvents.inc({ event });
    this.log.warn(
      { event, user: socket.data.user.username, issues: r.error.issues.slice(0, 3) },
      'bad event from browser',
    );
    this.fail(
      socket,
      'BAD_EVENT',
      `invalid ${event} event: ${r.error.issues[0]?.message ?? 'bad payload'}`,
    );
    return undefined;
  }

  /**
   * Token buckets, one of events and one of bytes: input beyond either rate is dropped (a
   * flood cannot starve other sessions, nor a few huge events pass for a few small ones).
   */
  private allowInput(socket: VdiSocket, bytes: number): boolean {
    const now = this.clock.now();
    const rate = this.opts.inputRate ?? DEFAULT_INPUT_RATE;
    const b = socket.data.bucket;
    b.tokens = Math.min(rate, b.tokens + ((now - b.at) * rate) / 1000);
    b.at = now;
    const byteRate = this.inputBytesPerSec;
    const bb = socket.data.byteBucket;
    bb.tokens = Math.min(byteRate, bb.tokens + ((now - bb.at) * byteRate) / 1000);
    bb.at = now;
    if (b.tokens < 1 || bb.tokens < bytes) return false;
    b.tokens--;
    bb.tokens -= bytes;
    return true;
  }

  private onConnection(socket: VdiSocket): void {
    gatewayMetrics.sockets.inc();
    void socket.join([`user:${socket.data.user.id}`, `http:${socket.data.httpSessionId}`]);
    socket.on('error', (err) => this.log.warn({ err }, 'socket error'));
    const known = new Set([
      'attach',
      'key',
      'pointer',
      'clipboard',
      'ack',
      'resize',
      'refresh',
      'heartbeat',
    ]);
    socket.onAny((event: string) => {
      if (!known.has(event)) {
        gatewayMetrics.badEvents.inc({ event: 'unknown' });
        this.fail(socket, 'UNKNOWN_EVENT', `unknown event "${String(event).slice(0, 64)}"`);
      }
    });

    socket.on('attach', (req, cb) => {
      const reply = typeof cb === 'function' ? cb : () => undefined;
      const parsed = this.valid(socket, AttachRequest, 'attach', req);
      if (!parsed)
        return reply({ ok: false, code: 'BAD_EVENT', message: 'invalid attach request' });
      this.attach(socket, parsed.sessionId, parsed.shadow ?? false).then(reply, (err: unknown) => {
        if (err instanceof BrokerError) {
          reply({ ok: false, code: err.code, message: err.message });
        } else if (err instanceof RfbError) {
          // the desktop's link failed before its first frame: say why, in our words
          this.log.warn({ err, sessionId: parsed.sessionId }, 'attach failed: desktop link');
          reply({ ok: false, ...viewerReason(err) });
        } else {
          this.log.error({ err }, 'attach failed');
          reply({
            ok: false,
            code: 'ATTACH_FAILED',
            message: 'the desktop could not be reached; try again',
          });
        }
      });
    });

    /** `fn` returns false when the desktop's link refused the input (it is not reading) */
    const input = <T extends z.ZodType>(
      event: string,
      schema: T,
      cost: (msg: z.infer<T>) => number,
      fn: (a: Attachment, msg: z.infer<T>) => boolean,
    ) => {
      return (payload: unknown) => {
        const a = this.attachments.get(socket);
        const msg = this.valid(socket, schema, event, payload);
        if (msg === undefined) return;
        if (!a) return this.fail(socket, 'NOT_ATTACHED', 'attach to a session first');
        if (a.shadow) return this.fail(socket, 'VIEW_ONLY', 'this is a view-only session');
        if (!this.allowInput(socket, cost(msg))) {
          gatewayMetrics.droppedInput.inc();
          if (event === 'clipboard')
            this.fail(socket, 'INPUT_RATE', 'too much input at once: the clipboard was not sent');
          return;
        }
        const link = a.stream.link;
        if (!link) return;
        let sent = false;
        try {
          sent = fn(a, msg);
        } catch (err) {
          this.log.warn({ err, event }, 'input failed');
        }
        if (!sent) {
          gatewayMetrics.droppedInput.inc();
          if (event === 'clipboard')
            this.fail(
              socket,
              'DESKTOP_BUSY',
              'the desktop is not accepting input right now: the clipboard was not sent',
            );
          return;
        }
        this.broker.noteInput(a.sessionId);
      };
    };
    socket.on(
      'key',
      input(
        'key',
        KeyEventMsg,
        () => INPUT_COST.key,
        (a, m) => a.stream.link!.keyEvent(m.keysym, m.down),
      ),
    );
    socket.on(
      'pointer',
      input(
        'pointer',
        PointerEventMsg,
        () => INPUT_COST.pointer,
        (a, m) => a.stream.link!.pointerEvent(m.x, m.y, m.buttons),
      ),
    );
    socket.on(
      'clipboard',
      input(
        'clipboard',
        ClipboardMsg,
        // RFB text is one byte per character: the UTF-16 length bounds it from above
        (m) => INPUT_COST.clipboardHeader + m.text.length,
        (a, m) => {
          if (m.text.length > a.limits.maxCutText) {
            this.fail(
              socket,
              'CLIPBOARD_TOO_LARGE',
              `the clipboard (${m.text.length} characters) is larger than this pool allows (${a.limits.maxCutText} bytes); it was not sent`,
            );
            return true; // refused by policy, not by the desktop
          }
          return a.stream.link!.clientCutText(m.text);
        },
      ),
    );
    socket.on(
      'resize',
      input(
        'resize',
        ResizeRequest,
        () => INPUT_COST.resize,
        // a size the desktop cannot take is not a busy desktop
        (a, m) => (a.stream.link!.setDesktopSize(m.width, m.height), true),
      ),
    );
    socket.on('ack', (payload) => {
      const m = this.valid(socket, AckMsg, 'ack', payload);
      if (m) this.attachments.get(socket)?.viewer.ack(m.seq);
    });
    socket.on('refresh', () => this.attachments.get(socket)?.viewer.requestKeyframe());
    socket.on('heartbeat', (cb: unknown) => {
      if (typeof cb === 'function') (cb as () => void)();
      else this.fail(socket, 'BAD_EVENT', 'a heartbeat needs an acknowledgement callback');
    });
    // anything from the viewer (acks, input, heartbeats, Socket.IO's pongs) shows it is there
    const live = { heard: true, silent: 0 };
    this.liveness.set(socket, live);
    socket.conn.on('packet', () => {
      live.heard = true;
    });
    socket.on('disconnect', (reason) => {
      gatewayMetrics.sockets.dec();
      const w = this.waiting.get(socket);
      if (w) {
        this.stopWaiting(socket);
        this.leftSession(socket, w.sessionId, w.shadow, reason);
      }
      this.detach(socket, reason);
    });
  }

  private async attach(socket: VdiSocket, sessionId: string, shadow: boolean) {
    if (this.attachments.get(socket)) this.detach(socket, 'reattach');
    const user = socket.data.user;
    const info = await this.broker.attachInfo(sessionId, user, shadow);
    const limits = this.limitsOf(info.pool.template);
    const stream = await this.streams.acquire(info.desktop.id, info.endpoint, limits);
    if (!socket.connected) {
      this.streams.release(info.desktop.id, stream);
      throw new BrokerError('GONE', 'socket closed during attach');
    }
    const viewer = new Viewer(
      randomUUID(),
      stream,
      (frame) => {
        gatewayMetrics.frames.inc();
        gatewayMetrics.bytes.inc(frame.byteLength);
        socket.emit('frame', frame);
      },
      this.clock,
      this.opts.maxFramesInFlight,
      (err) => this.log.error({ err, sessionId }, 'frame build failed'),
    );
    this.attachments.set(socket, {
      sessionId,
      desktopId: info.desktop.id,
      shadow,
      viewer,
      stream,
      limits,
    });
    // attached (by itself or by a retry of ours): no need to keep trying for it
    this.stopWaiting(socket);
    stream.viewers.add(viewer);
    await socket.join([
      `session:${sessionId}`,
      `desktop:${info.desktop.id}`,
      ...(shadow ? [] : [`viewers:${sessionId}`]),
    ]);
    if (stream.cursor) socket.emit('cursor', { ...stream.cursor, png: stream.cursor.png });
    const actor = { id: user.id, name: user.username, ip: socket.data.ip };
    if (shadow) {
      // the user's viewers are told; shadows are not (they would read "an administrator is watching")
      this.io.to(`viewers:${sessionId}`).emit('shadow', { watched: true, by: user.username });
      await this.broker.audit.record({
        actor: user.username,
        action: 'session.shadow.start',
        target: sessionId,
        ip: socket.data.ip,
      });
    } else {
      await this.broker.markActive(sessionId, actor);
      const watcher = this.socketsOfSession(sessionId).find((s) => this.attachments.get(s)!.shadow);
      if (watcher) socket.emit('shadow', { watched: true, by: watcher.data.user.username });
    }
    viewer.flush();
    this.log.info({ sessionId, user: user.username, shadow }, 'viewer attached');
    return {
      ok: true as const,
      sessionId,
      desktopId: info.desktop.id,
      width: stream.width,
      height: stream.height,
      viewOnly: shadow,
      name: info.desktop.name,
    };
  }

  /**
   * Attach a socket again after its desktop's stream went away (restart, lost or frozen RFB
   * link), with capped backoff, for as long as the socket stays and the session lives. The
   * viewer hears of every failed try; the session stays active meanwhile, since someone is
   * watching and waiting. Ends when the session has ended (the viewer is told why), when the
   * socket leaves, or when the viewer attaches by itself.
   */
  private reattach(socket: VdiSocket, sessionId: string, shadow: boolean): void {
    this.stopWaiting(socket);
    const w: Waiting = { sessionId, shadow, attempt: 0, timer: undefined };
    this.waiting.set(socket, w);
    this.scheduleReattach(socket, w);
  }

  private reattachDelay(attempt: number): number {
    const delays = this.opts.reattachDelaysMs ?? REATTACH_DELAYS_MS;
    return delays[Math.min(attempt, delays.length - 1)] ?? 1000;
  }

  private scheduleReattach(socket: VdiSocket, w: Waiting): void {
    w.timer = setTimeout(() => {
      w.timer = undefined;
      if (this.waiting.get(socket) !== w) return;
      if (!socket.connected) return this.stopWaiting(socket);
      this.attach(socket, w.sessionId, w.shadow).then(
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
            this.leftSession(socket, w.sessionId, w.shadow, `cannot attach again: ${err.message}`);
            return;
          }
          w.attempt++;
          const inMs = this.reattachDelay(w.attempt);
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
          this.scheduleReattach(socket, w);
        },
      );
    }, this.reattachDelay(w.attempt));
    w.timer.unref();
  }

  /** No longer waiting; it leaves the viewers' room (attach joins it again when it is in). */
  private stopWaiting(socket: VdiSocket): void {
    const w = this.waiting.get(socket);
    if (!w) return;
    clearTimeout(w.timer);
    this.waiting.delete(socket);
    void socket.leave(`viewers:${w.sessionId}`);
  }

  /** Does anyone but `except` view this session (attached, or waiting to attach again)? */
  private hasOtherViewer(sessionId: string, except: VdiSocket): boolean {
    for (const s of this.socketsOfSession(sessionId))
      if (s !== except && !this.attachments.get(s)!.shadow) return true;
    for (const [s, w] of this.waiting)
      if (s !== except && w.sessionId === sessionId && !w.shadow && s.connected) return true;
    return false;
  }

  /** A viewer stopped viewing a session: the last one leaving marks it disconnected. */
  private leftSession(socket: VdiSocket, sessionId: string, shadow: boolean, reason: string): void {
    if (shadow || this.hasOtherViewer(sessionId, socket)) return;
    const user = socket.data.user;
    void this.broker
      .markDisconnected(sessionId, { id: user.id, name: user.username, ip: socket.data.ip }, reason)
      .catch((err: unknown) => this.log.error({ err }, 'markDisconnected failed'));
  }

  /**
   * Let go of a socket's attachment. `reattaching`: the socket is about to wait for its
   * desktop to come back (see reattach); it still views the session, which stays active.
   */
  private detach(
    socket: VdiSocket,
    reason: string,
    opts: { keepSessionRoom?: boolean; reattaching?: boolean } = {},
  ): void {
    const a = this.attachments.get(socket);
    if (!a) return;
    this.attachments.delete(socket);
    a.viewer.close();
    a.stream.viewers.delete(a.viewer);
    const rooms = [
      `desktop:${a.desktopId}`,
      // a viewer waiting to attach again is still the session's viewer: an administrator's
      // message or Disconnect reaches it (see stopWaiting for when it leaves)
      ...(opts.reattaching ? [] : [`viewers:${a.sessionId}`]),
      ...(opts.keepSessionRoom ? [] : [`session:${a.sessionId}`]),
    ];
    for (const room of rooms) void socket.leave(room);
    this.streams.release(a.desktopId, a.stream);
    const rest = this.socketsOfSession(a.sessionId);
    const user = socket.data.user;
    if (a.shadow) {
      if (!rest.some((s) => this.attachments.get(s)!.shadow))
        this.io.to(`viewers:${a.sessionId}`).emit('shadow', { watched: false });
      void this.broker.audit.record({
        actor: user.username,
        action: 'session.shadow.end',
        target: a.sessionId,
        ip: socket.data.ip,
      });
    } else if (!opts.reattaching) {
      this.leftSession(socket, a.sessionId, false, reason);
    }
  }

  /**
   * Drop viewers not heard from for `timeoutMs` (a silent network black hole, a frozen
   * tab): counted in check periods rather than clock readings, so the bound holds however
   * the clock is moved.
   */
  private checkLiveness(timeoutMs: number): void {
    for (const s of this.sockets()) {
      const live = this.liveness.get(s);
      if (!live) continue;
      if (live.heard) {
        live.heard = false;
        live.silent = 0;
        continue;
      }
      if (++live.silent < LIVENESS_PERIODS) continue;
      gatewayMetrics.silentViewers.inc();
      this.log.warn(
        { user: s.data.user.username, sessionId: this.attachments.get(s)?.sessionId, timeoutMs },
        'viewer not heard from; dropping it',
      );
      // close the transport without a disconnect packet: should the network come back, the
      // viewer sees a dropped connection and reconnects, not "closed on purpose"
      s.conn.close(true);
    }
  }

  /**
   * This process is going away (SIGTERM): refuse new viewers and tell each one here that the
   * server is restarting, with a jittered wait so they do not all come back at once. They let
   * go and reconnect by themselves with backoff, to the next process or another node.
   */
  drain(): void {
    if (this.draining) return;
    this.draining = true;
    const [lo, hi] = this.opts.restartRetryMs ?? [1000, 3000];
    const sockets = this.sockets();
    for (const s of sockets)
      s.emit('server', {
        state: 'restarting',
        retryAfterMs: Math.round(lo + Math.random() * Math.max(0, hi - lo)),
      });
    this.log.info({ viewers: sockets.length }, 'draining: viewers told to reconnect');
  }

  async close(): Promise<void> {
    clearInterval(this.livenessTimer);
    for (const s of this.waiting.keys()) this.stopWaiting(s);
    this.streams.closeAll();
    // No disconnect packet: a viewer that still holds a connection sees the transport close,
    // as after a crash, and reconnects by itself (a disconnect packet would mean "closed on
    // purpose, stay away" to it).
    await new Promise<void>((r) => this.io.close(() => r()));
  }
}
