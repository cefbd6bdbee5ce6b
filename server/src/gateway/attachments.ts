import type { Logger } from 'pino';
import type { AttachRequest, AttachResult, DesktopResize, ErrorResult } from '@vdi/shared';
import type { Broker } from '../broker/broker.js';
import type { Clock } from '../clock.js';
import { BrokerError } from '../broker/errors.js';
import { RfbError, viewerReason } from '../rfb/errors.js';
import type { RfbLimits } from '../rfb/types.js';
import type { DesktopStream } from '../stream/desktop-stream.js';
import { poolResizeRange, type ResizeRange } from '../stream/limits.js';
import type { StreamManager } from '../stream/stream-manager.js';
import type { Viewer } from '../stream/viewer.js';
import type { StartEncoder } from '../stream/video/encoder.js';
import { gatewayMetrics } from './metrics.js';
import { Reattacher } from './reattach.js';
import { rooms, type VdiServer, type VdiSocket } from './viewer-socket.js';

/** A socket attached to a session: its viewer of the desktop's stream (this node only). */
export interface Attachment {
  sessionId: string;
  desktopId: string;
  shadow: boolean;
  viewer: Viewer;
  stream: DesktopStream;
  /** the pool's limits for this desktop's link */
  limits: RfbLimits;
  /** the sizes this viewer may resize the desktop to */
  resizeRange: ResizeRange;
}

const VIEWERS_PREFIX = rooms.viewers('');

export interface AttachmentsOptions {
  io: VdiServer;
  clock: Clock;
  broker: Broker;
  streams: StreamManager;
  log: Logger;
  /** unacknowledged frames per viewer (config.maxFramesInFlight) */
  maxFramesInFlight: number;
  /** the RFB limits of a pool's desktops, from its template */
  limitsOf(template: Record<string, unknown>): RfbLimits;
  /** runs a video region's encoder; absent: video mode is off */
  startEncoder?: StartEncoder;
  /** see GatewayOptions.reattachDelaysMs */
  reattachDelaysMs?: readonly number[];
}

/**
 * Which socket views which session on this node, and the session's presence: attaching a
 * socket (a viewer of the desktop's stream, the rooms, shadow notices, the session marked
 * active), letting go of it, attaching again after the desktop's stream went away, and marking
 * the session disconnected when its last viewer leaves (docs/architecture.md, decision 3).
 */
export class Attachments {
  private readonly bySocket = new WeakMap<VdiSocket, Attachment>();
  private readonly reattacher: Reattacher;
  private readonly io: VdiServer;
  private readonly broker: Broker;
  private readonly streams: StreamManager;
  private readonly log: Logger;

  constructor(private readonly opts: AttachmentsOptions) {
    ({ io: this.io, broker: this.broker, streams: this.streams, log: this.log } = opts);
    this.reattacher = new Reattacher(
      {
        attach: (socket, sessionId, shadow) => this.attach(socket, sessionId, shadow),
        left: (socket, sessionId, shadow, reason) =>
          this.leftSession(socket, sessionId, shadow, reason),
      },
      opts.log,
      opts.reattachDelaysMs,
    );
  }

  of(socket: VdiSocket): Attachment | undefined {
    return this.bySocket.get(socket);
  }

  /** every socket connected to this node */
  sockets(): VdiSocket[] {
    return [...this.io.of('/').sockets.values()];
  }

  ofSession(sessionId: string): VdiSocket[] {
    return this.sockets().filter((s) => this.bySocket.get(s)?.sessionId === sessionId);
  }

  ofDesktop(desktopId: string): VdiSocket[] {
    return this.sockets().filter((s) => this.bySocket.get(s)?.desktopId === desktopId);
  }

  /** Answer a socket's `attach` event: the attach result, or why not in the viewer's words. */
  request(
    socket: VdiSocket,
    req: AttachRequest,
    reply: (res: AttachResult | ErrorResult) => void,
  ): void {
    // kept on the socket: attaching again after the desktop came back uses it too
    socket.data.video = req.video ?? [];
    this.attach(socket, req.sessionId, req.shadow ?? false).then(reply, (err: unknown) => {
      if (err instanceof BrokerError) {
        reply({ ok: false, code: err.code, message: err.message });
      } else if (err instanceof RfbError) {
        // the desktop's link failed before its first frame: say why, in our words
        this.log.warn({ err, sessionId: req.sessionId }, 'attach failed: desktop link');
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
  }

  private async attach(
    socket: VdiSocket,
    sessionId: string,
    shadow: boolean,
  ): Promise<AttachResult> {
    if (this.bySocket.get(socket)) this.detach(socket, 'reattach');
    const user = socket.data.user;
    const info = await this.broker.attachInfo(sessionId, user, shadow);
    const limits = this.opts.limitsOf(info.pool.template);
    const stream = await this.streams.acquire(info.desktop.id, info.endpoint, limits);
    if (!socket.connected) {
      this.streams.release(info.desktop.id, stream);
      throw new BrokerError('GONE', 'socket closed during attach');
    }
    const viewer = stream.attach({
      send: (frame) => {
        gatewayMetrics.frames.inc();
        gatewayMetrics.bytes.inc(frame.byteLength);
        socket.emit('frame', frame);
      },
      maxInFlight: this.opts.maxFramesInFlight,
      onError: (err) => this.log.error({ err, sessionId }, 'frame build failed'),
      ...(this.opts.startEncoder &&
        socket.data.video?.length && {
          video: {
            codecs: socket.data.video,
            start: this.opts.startEncoder,
            log: this.log.child({ sessionId, part: 'video' }),
          },
        }),
    });
    const resizeRange = poolResizeRange(info.pool.template, limits);
    this.bySocket.set(socket, {
      sessionId,
      desktopId: info.desktop.id,
      shadow,
      viewer,
      stream,
      limits,
      resizeRange,
    });
    // attached (by itself or by a retry of ours): no need to keep trying for it
    this.reattacher.stop(socket);
    await socket.join([
      rooms.session(sessionId),
      rooms.desktop(info.desktop.id),
      ...(shadow ? [] : [rooms.viewers(sessionId)]),
    ]);
    if (stream.cursor) socket.emit('cursor', { ...stream.cursor, png: stream.cursor.png });
    const actor = { id: user.id, name: user.username, ip: socket.data.ip };
    if (shadow) {
      // the user's viewers are told; shadows are not (they would read "an administrator is watching")
      this.io.to(rooms.viewers(sessionId)).emit('shadow', { watched: true, by: user.username });
      await this.broker.audit.record({
        actor: user.username,
        action: 'session.shadow.start',
        target: sessionId,
        ip: socket.data.ip,
      });
    } else {
      await this.broker.markActive(sessionId, actor);
      const watcher = this.ofSession(sessionId).find((s) => this.bySocket.get(s)!.shadow);
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
      // a published application goes by its own name (providers/xvnc/app.ts)
      name: publishedAppName(info.pool.template) ?? info.desktop.name,
      resize: resizeOffer(shadow, info.pool.provider, stream, resizeRange),
      sound: !shadow && this.broker.provider(info.pool.provider).audio !== undefined,
    };
  }

  /**
   * The socket's desktop stream went away (restart, lost or frozen link): let go of it and
   * attach again, with backoff, once the desktop is back. It stays in its session's rooms
   * meanwhile: if the desktop is gone for good the session ends and it hears why.
   */
  waitForDesktop(socket: VdiSocket, reason: string): void {
    const a = this.bySocket.get(socket);
    if (!a) return;
    this.detach(socket, reason, { keepSessionRoom: true, reattaching: true });
    this.reattacher.start(socket, a.sessionId, a.shadow);
  }

  /** The socket disconnected: it no longer views or waits for anything. */
  disconnected(socket: VdiSocket, reason: string): void {
    const w = this.reattacher.of(socket);
    if (w) {
      this.reattacher.stop(socket);
      this.leftSession(socket, w.sessionId, w.shadow, reason);
    }
    this.detach(socket, reason);
  }

  /** Does anyone but `except` view this session (attached, or waiting to attach again)? */
  private hasOtherViewer(sessionId: string, except: VdiSocket): boolean {
    for (const s of this.ofSession(sessionId))
      if (s !== except && !this.bySocket.get(s)!.shadow) return true;
    return this.reattacher.hasViewerWaiting(sessionId, except);
  }

  /**
   * A viewer stopped viewing a session: the last one leaving, on every node, marks it
   * disconnected. Viewers on other nodes are asked for through the adapter (decision 11):
   * a tab closing here does not disconnect a user still viewing through another node.
   */
  private leftSession(socket: VdiSocket, sessionId: string, shadow: boolean, reason: string): void {
    if (shadow || this.hasOtherViewer(sessionId, socket)) return;
    const user = socket.data.user;
    const since = new Date(this.opts.clock.now()).toISOString();
    void this.viewedElsewhere(sessionId, socket)
      .then((elsewhere) => {
        if (elsewhere) return;
        return this.broker.markDisconnected(
          sessionId,
          { id: user.id, name: user.username, ip: socket.data.ip },
          reason,
          since,
        );
      })
      .catch((err: unknown) => this.log.error({ err, sessionId }, 'markDisconnected failed'));
  }

  /**
   * Does a viewer on another node view this session? A node that does not answer in time
   * counts as one that does (the presence sweep settles it later).
   */
  private async viewedElsewhere(sessionId: string, except: VdiSocket): Promise<boolean> {
    const here = this.io.of('/').sockets;
    try {
      const all = await this.io.in(rooms.viewers(sessionId)).fetchSockets();
      return all.some((s) => s.id !== except.id && !here.has(s.id));
    } catch (err) {
      this.log.warn({ err, sessionId }, 'viewers on other nodes unknown: session left active');
      return true;
    }
  }

  /**
   * The sessions some viewer on some node views (attached, or waiting to attach again), asked
   * of every node through the adapter; undefined when a node did not answer.
   */
  async viewedSessions(): Promise<Set<string> | undefined> {
    try {
      const out = new Set<string>();
      for (const s of await this.io.fetchSockets())
        for (const room of s.rooms)
          if (room.startsWith(VIEWERS_PREFIX)) out.add(room.slice(VIEWERS_PREFIX.length));
      return out;
    } catch (err) {
      this.log.warn({ err }, 'presence sweep: not every node answered');
      return undefined;
    }
  }

  /**
   * Let go of a socket's attachment. `reattaching`: the socket is about to wait for its
   * desktop to come back (see waitForDesktop); it still views the session, which stays active.
   */
  private detach(
    socket: VdiSocket,
    reason: string,
    opts: { keepSessionRoom?: boolean; reattaching?: boolean } = {},
  ): void {
    const a = this.bySocket.get(socket);
    if (!a) return;
    this.bySocket.delete(socket);
    a.stream.detach(a.viewer);
    const left = [
      rooms.desktop(a.desktopId),
      // a viewer waiting to attach again is still the session's viewer: an administrator's
      // message or Disconnect reaches it (see Reattacher.stop for when it leaves)
      ...(opts.reattaching ? [] : [rooms.viewers(a.sessionId)]),
      ...(opts.keepSessionRoom ? [] : [rooms.session(a.sessionId)]),
    ];
    for (const room of left) void socket.leave(room);
    this.streams.release(a.desktopId, a.stream);
    const rest = this.ofSession(a.sessionId);
    const user = socket.data.user;
    if (a.shadow) {
      if (!rest.some((s) => this.bySocket.get(s)!.shadow))
        this.io.to(rooms.viewers(a.sessionId)).emit('shadow', { watched: false });
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

  /** viewer counts, bandwidth and frame rate of this node's viewers of a session */
  sessionStats(sessionId: string): { viewers: number; shadows: number; kbps: number; fps: number } {
    let viewers = 0;
    let shadows = 0;
    let kbps = 0;
    let fps = 0;
    for (const s of this.ofSession(sessionId)) {
      const a = this.bySocket.get(s)!;
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

  /** stop every retry (the gateway closes) */
  close(): void {
    this.reattacher.stopAll();
  }
}

/** The name of the application a pool publishes, if it publishes one. */
function publishedAppName(template: Record<string, unknown>): string | undefined {
  const app = template.app;
  return typeof app === 'object' && app !== null && 'name' in app && typeof app.name === 'string'
    ? app.name
    : undefined;
}

/**
 * May this viewer resize the desktop to its window? Not a shadow (the owner's size is kept),
 * not a VM (QEMU forwards a resize to the guest, which may ignore it: scaling is what works
 * everywhere), not a VNC server that cannot.
 */
function resizeOffer(
  shadow: boolean,
  provider: string,
  stream: DesktopStream,
  range: ResizeRange,
): DesktopResize {
  let reason: string | undefined;
  if (shadow) reason = "A watching administrator keeps the owner's screen size.";
  else if (provider === 'qemu')
    reason = 'This virtual machine cannot change its screen size from here; it is scaled.';
  else if (!stream.canResize) reason = 'This desktop cannot change its screen size; it is scaled.';
  return { allowed: reason === undefined, ...(reason ? { reason } : {}), ...range };
}
