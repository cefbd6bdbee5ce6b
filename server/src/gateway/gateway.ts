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
import { StreamManager } from '../stream/stream-manager.js';
import type { DesktopStream } from '../stream/desktop-stream.js';
import { Viewer } from '../stream/viewer.js';
import type { AuthedUser } from '../auth/index.js';
import type { RfbEndpoint } from '../providers/types.js';
import { gatewayMetrics } from './metrics.js';

/** What travels with a socket. Plain data only: the Redis adapter serialises it across nodes. */
interface SocketData {
  user: AuthedUser;
  httpSessionId: string;
  ip: string;
  /** token bucket for input events */
  bucket: { tokens: number; at: number };
}

/** A socket attached to a session: its viewer of the desktop's stream (this node only). */
interface Attachment {
  sessionId: string;
  desktopId: string;
  shadow: boolean;
  viewer: Viewer;
  stream: DesktopStream;
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
}

/** Waits before each try to attach a viewer again after its desktop's stream went away, ms. */
const REATTACH_DELAYS_MS = [300, 1000, 2000, 4000, 8000];

/** Input events a socket may send per second before they are dropped. */
const DEFAULT_INPUT_RATE = 600;

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
      // No connection-state recovery: it would buffer every frame and skip auth on reconnect.
      // A reconnect attaches afresh and gets a keyframe.
      allowRequest: (req, cb) => {
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
      next();
    });
    this.io.on('connection', (s) => this.onConnection(s));

    this.streams = new StreamManager(clock, log, {
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
          if (!this.attachments.get(s)!.shadow) s.emit('clipboard', { text });
      },
      lost: (desktopId, reason) => {
        this.io.to(`desktop:${desktopId}`).emit('session', { state: 'desktop-lost', reason });
        // they stay in their session's room: if the desktop is gone for good, the session
        // ends and they hear why (a crashed VM shows first as a lost VNC connection);
        // if it is still there, they attach again by themselves
        for (const s of this.socketsOfDesktop(desktopId)) {
          const a = this.attachments.get(s)!;
          this.detach(s, 'desktop connection lost', { keepSessionRoom: true });
          this.reattach(s, a.sessionId, a.shadow);
        }
        void this.broker.checkDesktopsSoon([desktopId]);
      },
    });

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
        this.detach(s, 'desktop restarted', { keepSessionRoom: true });
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

  thumbnail(desktopId: string, endpoint: RfbEndpoint): Promise<Buffer> {
    return this.streams.thumbnail(desktopId, endpoint);
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

  /** token bucket: input beyond the rate is dropped (a flood cannot starve other sessions) */
  private allowInput(socket: VdiSocket): boolean {
    const rate = this.opts.inputRate ?? DEFAULT_INPUT_RATE;
    const b = socket.data.bucket;
    const now = this.clock.now();
    b.tokens = Math.min(rate, b.tokens + ((now - b.at) * rate) / 1000);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens--;
    return true;
  }

  private onConnection(socket: VdiSocket): void {
    gatewayMetrics.sockets.inc();
    void socket.join([`user:${socket.data.user.id}`, `http:${socket.data.httpSessionId}`]);
    socket.on('error', (err) => this.log.warn({ err }, 'socket error'));
    const known = new Set(['attach', 'key', 'pointer', 'clipboard', 'ack', 'resize', 'refresh']);
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
        const code = err instanceof BrokerError ? err.code : 'ATTACH_FAILED';
        const message =
          err instanceof BrokerError ? err.message : 'the desktop could not be reached; try again';
        if (!(err instanceof BrokerError)) this.log.error({ err }, 'attach failed');
        reply({ ok: false, code, message });
      });
    });

    const input = <T extends z.ZodType>(
      event: string,
      schema: T,
      fn: (a: Attachment, msg: z.infer<T>) => void,
    ) => {
      return (payload: unknown) => {
        const a = this.attachments.get(socket);
        const msg = this.valid(socket, schema, event, payload);
        if (msg === undefined) return;
        if (!a) return this.fail(socket, 'NOT_ATTACHED', 'attach to a session first');
        if (a.shadow) return this.fail(socket, 'VIEW_ONLY', 'this is a view-only session');
        if (!this.allowInput(socket)) {
          gatewayMetrics.droppedInput.inc();
          return;
        }
        const link = a.stream.link;
        if (!link) return;
        try {
          fn(a, msg);
        } catch (err) {
          this.log.warn({ err, event }, 'input failed');
        }
        this.broker.noteInput(a.sessionId);
      };
    };
    socket.on(
      'key',
      input('key', KeyEventMsg, (a, m) => a.stream.link!.keyEvent(m.keysym, m.down)),
    );
    socket.on(
      'pointer',
      input('pointer', PointerEventMsg, (a, m) => a.stream.link!.pointerEvent(m.x, m.y, m.buttons)),
    );
    socket.on(
      'clipboard',
      input('clipboard', ClipboardMsg, (a, m) => a.stream.link!.clientCutText(m.text)),
    );
    socket.on(
      'resize',
      input(
        'resize',
        ResizeRequest,
        (a, m) => void a.stream.link!.setDesktopSize(m.width, m.height),
      ),
    );
    socket.on('ack', (payload) => {
      const m = this.valid(socket, AckMsg, 'ack', payload);
      if (m) this.attachments.get(socket)?.viewer.ack(m.seq);
    });
    socket.on('refresh', () => this.attachments.get(socket)?.viewer.requestKeyframe());
    socket.on('disconnect', (reason) => {
      gatewayMetrics.sockets.dec();
      this.detach(socket, reason);
    });
  }

  private async attach(socket: VdiSocket, sessionId: string, shadow: boolean) {
    if (this.attachments.get(socket)) this.detach(socket, 'reattach');
    const user = socket.data.user;
    const info = await this.broker.attachInfo(sessionId, user, shadow);
    const stream = await this.streams.acquire(info.desktop.id, info.endpoint);
    if (!socket.connected) {
      this.streams.release(info.desktop.id);
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
    this.attachments.set(socket, { sessionId, desktopId: info.desktop.id, shadow, viewer, stream });
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
   * Attach a socket again after its desktop's stream went away (restart, lost RFB link),
   * with backoff. Gives up when the session has ended (the viewer is told) or the socket left.
   */
  private reattach(socket: VdiSocket, sessionId: string, shadow: boolean, attempt = 0): void {
    const delay = REATTACH_DELAYS_MS[attempt];
    if (delay === undefined) return;
    const timer = setTimeout(() => {
      if (!socket.connected || this.attachments.has(socket)) return;
      this.attach(socket, sessionId, shadow).then(
        () => socket.emit('session', { state: 'active' }),
        (err: unknown) => {
          if (
            err instanceof BrokerError &&
            ['SESSION_ENDED', 'SESSION_NOT_FOUND', 'FORBIDDEN', 'NOT_ENTITLED'].includes(err.code)
          ) {
            socket.emit('session', { state: 'ended', reason: err.message });
            return;
          }
          this.reattach(socket, sessionId, shadow, attempt + 1);
        },
      );
    }, delay);
    timer.unref();
  }

  private detach(
    socket: VdiSocket,
    reason: string,
    opts: { keepSessionRoom?: boolean } = {},
  ): void {
    const a = this.attachments.get(socket);
    if (!a) return;
    this.attachments.delete(socket);
    a.viewer.close();
    a.stream.viewers.delete(a.viewer);
    const rooms = [
      `desktop:${a.desktopId}`,
      `viewers:${a.sessionId}`,
      ...(opts.keepSessionRoom ? [] : [`session:${a.sessionId}`]),
    ];
    for (const room of rooms) void socket.leave(room);
    this.streams.release(a.desktopId);
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
    } else if (!rest.some((s) => !this.attachments.get(s)!.shadow)) {
      void this.broker
        .markDisconnected(
          a.sessionId,
          { id: user.id, name: user.username, ip: socket.data.ip },
          reason,
        )
        .catch((err: unknown) => this.log.error({ err }, 'markDisconnected failed'));
    }
  }

  async close(): Promise<void> {
    this.io.disconnectSockets(true);
    this.streams.closeAll();
    await new Promise<void>((r) => this.io.close(() => r()));
  }
}
