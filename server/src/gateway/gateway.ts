import type http from 'node:http';
import type { RequestHandler } from 'express';
import { Server } from 'socket.io';
import type { Logger } from 'pino';
import { MAX_CLIENT_MESSAGE_BYTES, vdiParser } from '@vdi/shared';
import type { Clock } from '../clock.js';
import type { Broker } from '../broker/broker.js';
import { SYSTEM } from '../broker/actor.js';
import { StreamManager, type StreamManagerOptions } from '../stream/stream-manager.js';
import {
  poolRfbLimits,
  DEFAULT_DESKTOP_LIMITS,
  type DesktopLimitDefaults,
} from '../stream/limits.js';
import type { RfbLimits } from '../rfb/types.js';
import type { RfbEndpoint } from '../rfb/endpoint.js';
import { Attachments } from './attachments.js';
import { AudioRelay } from './audio-relay.js';
import { MicRelay } from './mic-relay.js';
import { ClipboardOut } from './clipboard-out.js';
import { NodeMoves } from './node-moves.js';
import { relayBrokerEvents, streamHooks } from './desktop-events.js';
import { authenticate, originAllowed } from './handshake.js';
import { listenForInput } from './input.js';
import {
  DEFAULT_INPUT_BYTES_PER_SEC,
  DEFAULT_INPUT_RATE,
  type InputRates,
} from './input-budget.js';
import { Liveness, pingIntervalFor, VIEWER_TIMEOUT_MS } from './liveness.js';
import { metrics } from '../metrics.js';
import { gatewayMetrics } from './metrics.js';
import { startFfmpeg } from '../stream/video/encoder.js';
import { refuseUnknownEvents, valid } from './validate.js';
import { fail, rooms, type VdiServer, type VdiSocket } from './viewer-socket.js';

export interface GatewayOptions {
  maxFramesInFlight: number;
  /**
   * Video mode (config.video): regions in motion go to an ffmpeg child per viewer, for
   * browsers that decode H.264. @default off
   */
  video?: { enabled: boolean; ffmpegPath: string };
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
      remoteEncodings: readonly ('tight' | 'zrle')[];
    }>;
  /** the desktops' RFB links: bounds, timeouts, linger */
  streams?: StreamManagerOptions;
  /**
   * Waits before each try to attach a viewer again after its desktop's stream went away, ms;
   * the last one repeats for as long as the session lives and the viewer stays.
   * @default REATTACH_DELAYS_MS (reattach.ts)
   */
  reattachDelaysMs?: readonly number[];
  /**
   * A viewer heard nothing from (no ack, input, heartbeat or Socket.IO pong) for this long is
   * dropped, ms; the drop comes between this and 1.25 times this. Socket.IO pings every
   * quarter of it, so an idle viewer that is alive always answers in time.
   * @default VIEWER_TIMEOUT_MS (liveness.ts)
   */
  viewerTimeoutMs?: number;
  /** after SIGTERM, viewers wait between these before reconnecting, ms (spreads the herd) @default [1000, 3000] */
  restartRetryMs?: readonly [number, number];
  /**
   * How often active sessions are checked for a viewer on any node, ms: one no node views on
   * two checks in a row (its viewer's node died, or a node restarted) is marked disconnected.
   * @default 5000
   */
  presenceSweepMs?: number;
}

/**
 * Socket.IO for viewers: attach to a session, frames out, input and acks in. Every event is
 * validated; a bad one gets an `error` event and changes nothing. Session auth is the same
 * express-session cookie as the REST API.
 *
 * This file wires the parts and holds what the rest of the server asks of viewers; the parts:
 * handshake.ts (origin, sign-in), validate.ts, input.ts with input-budget.ts, attachments.ts
 * with reattach.ts (which socket views which session), desktop-events.ts (what desktops and
 * the broker report, to viewers), clipboard-out.ts, liveness.ts.
 */
export class Gateway {
  readonly io: VdiServer;
  readonly streams: StreamManager;
  private readonly attachments: Attachments;
  private readonly liveness: Liveness;
  private readonly audio: AudioRelay;
  private readonly mic: MicRelay;
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
    const viewerTimeoutMs = opts.viewerTimeoutMs ?? VIEWER_TIMEOUT_MS;
    this.io = new Server(server, {
      transports: ['websocket'],
      // one binary WebSocket message per frame; see shared/src/wire.ts
      parser: vdiParser,
      perMessageDeflate: false,
      maxHttpBufferSize: MAX_CLIENT_MESSAGE_BYTES,
      serveClient: false,
      pingInterval: pingIntervalFor(viewerTimeoutMs),
      // No connection-state recovery: it would buffer every frame and skip auth on reconnect.
      // A reconnect attaches afresh and gets a keyframe.
      allowRequest: (req, cb) => {
        // refused while draining: the browser's reconnect backoff brings it to the next
        // server process (or another node) instead
        if (this.draining) return cb('the server is restarting', false);
        const ok = originAllowed(req.headers.origin, req.headers.host, opts.allowedOrigins);
        if (!ok)
          this.log.warn(
            { origin: req.headers.origin, host: req.headers.host },
            'socket handshake refused: cross-origin',
          );
        cb(ok ? null : 'origin not allowed', ok);
      },
    });
    for (const m of middlewares) this.io.engine.use(m);
    this.io.use(authenticate(clock, this.inputRates));
    this.io.on('connection', (s) => this.onConnection(s));

    const events = {
      io: this.io,
      broker,
      log,
      attachments: () => this.attachments,
      clipboardOut: new ClipboardOut(),
    };
    const dl = opts.desktopLimits;
    this.streams = new StreamManager(clock, log, streamHooks(events), {
      ...opts.streams,
      rfb: {
        ...(dl && {
          sendBufferBytes: dl.sendBufferBytes,
          sendStallMs: dl.sendStallMs,
          messageTimeoutMs: dl.messageTimeoutMs,
          ...(dl.remoteEncodings && { remoteEncodings: dl.remoteEncodings }),
        }),
        ...opts.streams?.rfb,
      },
    });
    this.attachments = new Attachments({
      io: this.io,
      clock,
      broker,
      streams: this.streams,
      log,
      maxFramesInFlight: opts.maxFramesInFlight,
      ...(opts.video?.enabled && { startEncoder: startFfmpeg(opts.video.ffmpegPath) }),
      limitsOf: (template) => this.limitsOf(template),
      ...(opts.reattachDelaysMs && { reattachDelaysMs: opts.reattachDelaysMs }),
    });
    this.liveness = new Liveness(
      () => this.attachments.sockets(),
      viewerTimeoutMs,
      log,
      (s) => this.attachments.of(s)?.sessionId,
    );
    relayBrokerEvents(events, this.streams);
    this.audio = new AudioRelay(broker, log);
    this.mic = new MicRelay(broker, this.clock, log);
    this.presenceTimer = setInterval(
      () => void this.sweepPresence().catch((err: unknown) => log.warn({ err }, 'presence sweep')),
      opts.presenceSweepMs ?? 5000,
    );
    this.presenceTimer.unref();
    // a desktop's move to another host keeps its viewers on every node attached (decision 12)
    this.moves = new NodeMoves(
      this.io,
      this.streams,
      (provider, handle) => broker.endpointOf(provider, handle),
      log,
    );
    broker.setDesktopLinks(this.moves);
  }

  private readonly presenceTimer: NodeJS.Timeout;
  private readonly moves: NodeMoves;

  /** A cluster adapter carries events between nodes now: moves are told to the others. */
  joinedCluster(): void {
    this.moves.tellPeers();
  }
  /** active sessions no node viewed at the last sweep */
  private unviewed = new Set<string>();

  /**
   * Cluster-wide presence (decision 11): an active session that no viewer on any node views
   * at two sweeps in a row is marked disconnected, so its disconnected timeout runs. That is
   * how a session whose only viewer was on a node that died, or that a restart left active,
   * gets there. Two sweeps, so a viewer attaching while one looks is not missed.
   */
  async sweepPresence(): Promise<void> {
    if (this.draining) return;
    const since = new Date(this.clock.now()).toISOString();
    const active = await this.broker.activeSessionIds();
    if (active.length === 0) {
      this.unviewed.clear();
      return;
    }
    const viewed = await this.attachments.viewedSessions();
    if (!viewed) return;
    const unviewed = new Set(active.filter((id) => !viewed.has(id)));
    for (const id of unviewed) {
      if (!this.unviewed.has(id)) continue;
      await this.broker.markDisconnected(id, SYSTEM, 'no viewer on any node', since);
    }
    this.unviewed = unviewed;
  }

  private onConnection(socket: VdiSocket): void {
    gatewayMetrics.sockets.inc();
    void socket.join([rooms.user(socket.data.user.id), rooms.http(socket.data.httpSessionId)]);
    socket.on('error', (err) => this.log.warn({ err }, 'socket error'));
    refuseUnknownEvents(socket);

    socket.on('attach', (req, cb) => {
      const reply = typeof cb === 'function' ? cb : () => undefined;
      const parsed = valid(socket, this.log, 'attach', req);
      if (!parsed)
        return reply({ ok: false, code: 'BAD_EVENT', message: 'invalid attach request' });
      this.attachments.request(socket, parsed, reply);
    });
    listenForInput(socket, {
      clock: this.clock,
      log: this.log,
      rates: this.inputRates,
      attachmentOf: (s) => this.attachments.of(s),
      noteInput: (sessionId) => this.broker.noteInput(sessionId),
    });
    socket.on('ack', (payload) => {
      const m = valid(socket, this.log, 'ack', payload);
      if (!m) return;
      const acked = this.attachments.of(socket)?.viewer.ack(m.seq);
      // only for frames this viewer was sent: made-up acks do not skew the figures
      if (acked && m.renderMs !== undefined)
        gatewayMetrics.renderSeconds.observe(m.renderMs / 1000);
    });
    socket.on('videoError', (payload) => {
      const m = valid(socket, this.log, 'videoError', payload);
      if (m) this.attachments.of(socket)?.viewer.videoFailed(m.regionId, m.reason);
    });
    socket.on('refresh', () => this.attachments.of(socket)?.viewer.requestKeyframe());
    socket.on('audio', (payload) => this.onAudio(socket, payload));
    socket.on('mic', (payload) => this.onMic(socket, payload));
    socket.on('heartbeat', (cb: unknown) => {
      if (typeof cb === 'function') (cb as () => void)();
      else fail(socket, 'BAD_EVENT', 'a heartbeat needs an acknowledgement callback');
    });
    this.liveness.watch(socket);
    socket.on('disconnect', (reason) => {
      gatewayMetrics.sockets.dec();
      this.audio.unsubscribe(socket);
      this.mic.stop(socket);
      this.attachments.disconnected(socket, reason);
    });
  }

  /** A viewer asks for its desktop's sound, or for no more of it (audio-relay.ts). */
  private onAudio(socket: VdiSocket, payload: unknown): void {
    const m = valid(socket, this.log, 'audio', payload);
    if (!m) return;
    const a = this.attachments.of(socket);
    if (m.codec === 'off' || !a) return this.audio.unsubscribe(socket);
    if (a.shadow) return fail(socket, 'AUDIO_SHADOW', 'a shadowing viewer gets no sound');
    this.audio.subscribe(socket, a.desktopId, m.codec).catch((err: unknown) => {
      this.log.warn({ err, desktopId: a.desktopId }, 'desktop sound not available');
      fail(socket, 'AUDIO_UNAVAILABLE', (err as Error).message);
    });
  }

  /** Microphone PCM from a viewer for its desktop, or (empty) the microphone off (mic-relay.ts). */
  private onMic(socket: VdiSocket, payload: unknown): void {
    const m = valid(socket, this.log, 'mic', payload);
    if (!m) return;
    const a = this.attachments.of(socket);
    if (!a) return this.mic.stop(socket);
    if (a.shadow) return fail(socket, 'AUDIO_SHADOW', 'a shadowing viewer has no microphone');
    const pcm = Buffer.from(m.buffer, m.byteOffset, m.byteLength);
    this.mic.chunk(socket, a.desktopId, pcm).catch((err: unknown) => {
      this.log.warn({ err, desktopId: a.desktopId }, 'desktop microphone not available');
      fail(socket, 'AUDIO_UNAVAILABLE', (err as Error).message);
    });
  }

  /** sign-out: close the sockets that signed in with that browser session */
  closeHttpSession(httpSessionId: string): void {
    this.io.in(rooms.http(httpSessionId)).disconnectSockets(true);
  }

  /** account disabled, deleted or its password/role changed: close all its sockets */
  closeUser(userId: string): void {
    this.io.in(rooms.user(userId)).disconnectSockets(true);
  }

  /** viewer counts, bandwidth and frame rate of this node's viewers of a session */
  sessionStats(sessionId: string): { viewers: number; shadows: number; kbps: number; fps: number } {
    return this.attachments.sessionStats(sessionId);
  }

  /** an admin's message to the user's viewers, on whichever node they are; resolves to how many */
  async sendMessage(sessionId: string, text: string, from: string): Promise<number> {
    const room = rooms.viewers(sessionId);
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

  private get inputRates(): InputRates {
    return {
      events: this.opts.inputRate ?? DEFAULT_INPUT_RATE,
      bytes: this.opts.desktopLimits?.inputBytesPerSec ?? DEFAULT_INPUT_BYTES_PER_SEC,
    };
  }

  /** The RFB limits of a pool's desktops (its template's fields, else the server's defaults). */
  private limitsOf(template: Record<string, unknown>): RfbLimits {
    return poolRfbLimits(template, this.opts.desktopLimits ?? DEFAULT_DESKTOP_LIMITS);
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
    const sockets = this.attachments.sockets();
    for (const s of sockets)
      s.emit('server', {
        state: 'restarting',
        retryAfterMs: Math.round(lo + Math.random() * Math.max(0, hi - lo)),
      });
    this.log.info({ viewers: sockets.length }, 'draining: viewers told to reconnect');
  }

  /** Set the viewer gauge of /metrics from this node's attachments (at each scrape). */
  updateGauges(): void {
    let user = 0;
    let shadow = 0;
    for (const s of this.attachments.sockets()) {
      const a = this.attachments.of(s);
      if (a?.shadow) shadow++;
      else if (a) user++;
    }
    metrics.viewers.set({ kind: 'user' }, user);
    metrics.viewers.set({ kind: 'shadow' }, shadow);
  }

  async close(): Promise<void> {
    clearInterval(this.presenceTimer);
    this.liveness.close();
    this.audio.close();
    this.mic.close();
    this.attachments.close();
    this.streams.closeAll();
    // No disconnect packet: a viewer that still holds a connection sees the transport close,
    // as after a crash, and reconnects by itself (a disconnect packet would mean "closed on
    // purpose, stay away" to it).
    await this.io.close();
  }
}
