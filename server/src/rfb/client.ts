/**
 * RfbClient: one RFB connection to one desktop. It owns the socket, runs the handshake,
 * asks for our pixel format and encodings, and sends input. Its parts, each in its own
 * file: the byte and time bounds of the socket (connection-bounds.ts), how updates keep
 * flowing (update-flow.ts: continuous updates or one request in flight), fences and the
 * keepalive (fences.ts), who serves a unix socket (peer-uid.ts), and its options and events
 * (client-api.ts). What stays here (about 490 lines, over the house's ~400 on purpose) is one
 * state machine, the phases from connect to close, with the public methods that read and
 * drive it: each of them checks the phase, so parting them would spread it over files.
 *
 * Every failure goes through one funnel (`fail`): it logs the details, closes the socket,
 * rejects a pending connect(), emits `error` (if anyone listens) and `close` with a short
 * reason. Nothing thrown while handling server bytes escapes the socket's handlers, and
 * nothing here touches any other connection.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { pino, type Logger } from 'pino';
import { ByteQueue } from './byte-queue.js';
import {
  clientSettings,
  type RfbClientEvents,
  type RfbClientOptions,
  type RfbClientPhase,
  type RfbClientSettings,
  type RemoteEncoding,
  type ServerInfo,
} from './client-api.js';
import {
  EXTENDED_CLIPBOARD_ENCODING,
  ExtClip,
  encodeClipboardCaps,
  encodeClipboardNotify,
  encodeClipboardProvide,
  encodeClipboardRequest,
  parseExtendedClipboard,
} from './extended-clipboard.js';
import {
  encodeClientCutText,
  encodeKeyEvent,
  encodeLatin1,
  encodePointerEvent,
  encodeSetDesktopSize,
  encodeSetEncodings,
  encodeSetPixelFormat,
} from './client-messages.js';
import { ConnectionBounds } from './connection-bounds.js';
import { Encoding } from './constants.js';
import { connectEndpoint, describeEndpoint } from './endpoint.js';
import { ReadArena } from './read-arena.js';
import { RfbError, RfbProtocolError } from './errors.js';
import { Fences } from './fences.js';
import {
  canRequestFramebufferSize,
  type ExtendedDesktopSizeEvent,
  type Screen,
} from './framebuffer-size.js';
import { Handshake, type HandshakeResult } from './handshake.js';
import { ServerMessageParser } from './parser.js';
import { untrustedServer } from './peer-uid.js';
import { UpdateFlow } from './update-flow.js';

/** After close(), unflushed writes get this long before the socket is destroyed, ms. */
const CLOSE_FLUSH_MS = 1_000;

const ENCODINGS_BASE = [
  Encoding.CopyRect,
  Encoding.Raw,
  Encoding.DesktopSize,
  Encoding.ExtendedDesktopSize,
  Encoding.Cursor,
  Encoding.LastRect,
] as const;

/** The wire numbers of the compressed encodings a remote endpoint may ask for. */
const REMOTE_ENCODINGS: Readonly<Record<RemoteEncoding, number>> = {
  tight: Encoding.Tight,
  zrle: Encoding.ZRLE,
};

export class RfbClient extends EventEmitter<RfbClientEvents> {
  private readonly settings: RfbClientSettings;
  private readonly log: Logger;

  private phaseValue: RfbClientPhase = 'idle';
  private socket: Duplex | undefined;
  /** bytes read from the server (a stream endpoint has no socket counter of its own) */
  private received = 0;
  private bounds: ConnectionBounds | undefined;
  private readonly queue = new ByteQueue();
  private handshake: Handshake | undefined;
  private parser: ServerMessageParser | undefined;
  /** what ServerInit said and what we learnt since; info adds the flow's and fences' facts */
  private serverInfo: Omit<ServerInfo, 'continuousUpdates' | 'fence'> | undefined;
  private pending:
    { resolve: (info: ServerInfo) => void; reject: (err: Error) => void } | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private readonly flow: UpdateFlow;
  private readonly fences: Fences;
  private screens: Screen[] = [];
  /** the server's Extended Clipboard capabilities (flags), once it has sent them */
  private clipboardCaps: number | undefined;
  /** the text we last announced to the server, given when it asks */
  private clipboardOut: string | undefined;
  /** the server answered a SetDesktopSize of ours with "prohibited" */
  private resizeProhibited = false;

  constructor(options: RfbClientOptions) {
    super();
    this.settings = clientSettings(options);
    this.log = (options.logger ?? pino({ level: 'silent' })).child({
      rfb: describeEndpoint(this.settings.endpoint),
    });
    this.flow = new UpdateFlow(
      {
        canSend: () => this.canSend(),
        write: (b) => this.write(b),
        size: () => this.parser,
        log: this.log,
      },
      this.settings.continuousUpdates,
    );
    this.fences = new Fences({
      keepaliveMs: this.settings.keepaliveMs,
      write: (b) => this.write(b),
      fail: (e) => this.fail(e),
    });
  }

  /** Bytes read from the server so far (handshake included), for metrics and benchmarks. */
  get bytesReceived(): number {
    return this.received;
  }

  get phase(): RfbClientPhase {
    return this.phaseValue;
  }

  /** Current server facts (size follows resizes); undefined before ServerInit. */
  get info(): ServerInfo | undefined {
    if (this.serverInfo === undefined) return undefined;
    return {
      ...this.serverInfo,
      continuousUpdates: this.flow.serverPushes,
      fence: this.fences.seen,
    };
  }

  /**
   * Connect, handshake, and resolve once the first framebuffer update with pixels has
   * been applied (so the sink holds a whole picture and the server's extensions are known).
   * Rejects with an RfbError on any failure.
   */
  connect(): Promise<ServerInfo> {
    if (this.phaseValue !== 'idle') {
      return Promise.reject(new Error(`RfbClient.connect() called in phase ${this.phaseValue}`));
    }
    this.phaseValue = 'connecting';
    const promise = new Promise<ServerInfo>((resolve, reject) => {
      this.pending = { resolve, reject };
    });
    const { endpoint: ep, connectTimeoutMs, keepaliveMs } = this.settings;
    this.connectTimer = setTimeout(() => {
      this.fail(
        new RfbError(
          'connect-timeout',
          `no framebuffer from ${describeEndpoint(ep)} within ${connectTimeoutMs} ms (phase ${this.phaseValue})`,
        ),
      );
    }, connectTimeoutMs);

    // reads land in one reused arena (read-arena.ts), not a new buffer each
    const arena = new ReadArena();
    const { socket, onread } = connectEndpoint(ep, {
      buffer: () => arena.next(this.queue.available),
      callback: (n) => {
        this.onData(arena.wrote(n));
        return true;
      },
    });
    this.socket = socket;
    this.bounds = new ConnectionBounds(socket, {
      sendBufferBytes: this.settings.sendBufferBytes,
      sendStallMs: this.settings.sendStallMs,
      messageTimeoutMs: this.settings.messageTimeoutMs,
      fail: (e) => this.fail(e),
      resumed: () => this.process(),
      log: this.log,
    });
    if (ep.kind === 'tcp' && socket instanceof net.Socket) {
      socket.setNoDelay(true); // input events are tiny and latency-sensitive
      if (keepaliveMs > 0) socket.setKeepAlive(true, keepaliveMs);
    }
    socket.on('connect', () => {
      if (this.phaseValue !== 'connecting') return;
      this.log.debug('socket connected');
      if (ep.kind === 'unix' && ep.serverUid !== undefined) {
        // not a byte of the server's is read before we know who it is
        socket.pause();
        if (socket instanceof net.Socket) void this.checkServer(socket, ep.serverUid);
      } else this.startHandshake();
    });
    if (!onread) socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => {
      this.fail(
        new RfbError('socket-error', `${describeEndpoint(ep)}: ${err.message}`, { cause: err }),
      );
    });
    socket.on('close', () => this.onSocketClose());
    return promise;
  }

  /** X keysym press or release. false if not connected or the server is not reading. */
  keyEvent(keysym: number, down: boolean): boolean {
    if (!this.canSend()) return false;
    return this.writeInput(encodeKeyEvent(keysym, down));
  }

  /**
   * Pointer at (x, y), clamped to the framebuffer; bit n of buttonMask = button n+1 down.
   * false if not connected or the server is not reading.
   */
  pointerEvent(x: number, y: number, buttonMask: number): boolean {
    const parser = this.parser;
    if (!this.canSend() || parser === undefined) return false;
    return this.writeInput(
      encodePointerEvent(clamp(x, parser.width - 1), clamp(y, parser.height - 1), buttonMask),
    );
  }

  /**
   * Put text in the desktop's clipboard: as UTF-8 through the Extended Clipboard when the
   * server offers it (TigerVNC does), else as RFB's Latin-1 cut text, where other characters
   * become '?'. Cut at limits.maxCutText bytes. false if not connected or the desktop does
   * not read.
   */
  clientCutText(text: string): boolean {
    if (!this.canSend()) return false;
    const caps = this.clipboardCaps;
    if (caps !== undefined && caps & ExtClip.Notify && caps & ExtClip.Text) {
      // UTF-8 through the Extended Clipboard: say there is text; the server asks for it
      // (request) when an application in the desktop pastes
      this.clipboardOut = text;
      return this.writeInput(encodeClipboardNotify(true));
    }
    return this.writeInput(
      encodeClientCutText(encodeLatin1(text, this.settings.limits.maxCutText)),
    );
  }

  /** An Extended Clipboard message from the server (see extended-clipboard.ts). */
  private onExtendedClipboard(payload: Buffer): void {
    const { sink, limits } = this.settings;
    const m = parseExtendedClipboard(payload, limits.maxCutText);
    switch (m.action) {
      case 'caps':
        this.clipboardCaps = m.flags;
        this.write(encodeClipboardCaps(limits.maxCutText));
        return;
      case 'notify':
        // new text in the desktop's clipboard: ask for it
        if (m.text && this.clipboardCaps !== undefined && this.clipboardCaps & ExtClip.Request)
          this.writeInput(encodeClipboardRequest());
        return;
      case 'request':
        if (m.text && this.clipboardOut !== undefined)
          this.writeInput(encodeClipboardProvide(this.clipboardOut, limits.maxCutText));
        return;
      case 'peek':
        this.writeInput(encodeClipboardNotify(this.clipboardOut !== undefined));
        return;
      case 'provide':
        if (m.text !== undefined) sink.serverCutText(m.text);
        return;
      case 'too-large':
        sink.serverCutTextDropped?.(m.limit + 1, m.limit);
        return;
      case 'invalid':
        // only the clipboard is lost; the screen goes on
        this.log.warn({ reason: m.reason }, 'bad extended clipboard message ignored');
        return;
    }
  }

  /** Bytes waiting in the socket towards the server (ours to bound). */
  get sendBuffered(): number {
    return this.bounds?.sendBuffered ?? 0;
  }

  /** Ask for the whole screen (non-incremental), e.g. when a viewer attaches. */
  requestFullUpdate(): boolean {
    return this.flow.requestFull();
  }

  /**
   * Ask the server to resize the desktop (SetDesktopSize, one screen covering it all).
   * Returns false, sending nothing, when the server has not shown ExtendedDesktopSize
   * support or the size is outside the limits (width, height, area). The outcome arrives as a
   * 'desktop-size' event (reason 'this-client') and, if applied, a sink.resize.
   */
  setDesktopSize(width: number, height: number): boolean {
    if (!this.canSend() || this.serverInfo?.extendedDesktopSize !== true) return false;
    // never ask for a size we would refuse when the server applies it
    if (!canRequestFramebufferSize(width, height, this.settings.limits)) return false;
    const first = this.screens[0];
    const screen: Screen = {
      id: first?.id ?? 0,
      x: 0,
      y: 0,
      width,
      height,
      flags: first?.flags ?? 0,
    };
    return this.writeInput(encodeSetDesktopSize(width, height, [screen]));
  }

  /**
   * Has the server shown it can resize (ExtendedDesktopSize) without refusing a resize of ours
   * as prohibited? A desktop that cannot resize is scaled by its viewers instead.
   */
  get canResize(): boolean {
    return this.serverInfo?.extendedDesktopSize === true && !this.resizeProhibited;
  }

  /**
   * Stop asking for updates (e.g. nobody is watching). With continuous updates the
   * server is told to stop pushing. Input still works.
   */
  pause(): void {
    this.flow.pause();
  }

  /** Resume updates after pause(). Call requestFullUpdate() too if the picture must be fresh. */
  resume(): void {
    this.flow.resume();
  }

  /** Close the connection (idempotent). Emits close with this reason. */
  close(reason = 'closed by the client'): void {
    if (this.phaseValue === 'closed') return;
    this.phaseValue = 'closed';
    this.stopTimers();
    const socket = this.socket;
    if (socket !== undefined) {
      // let the last input events drain, then make sure the socket goes
      socket.end();
      setTimeout(() => socket.destroy(), CLOSE_FLUSH_MS).unref();
    }
    this.log.debug({ reason }, 'closed');
    this.settle(new RfbError('closed', reason));
    this.emit('close', { reason });
  }

  /** Check who serves the socket, then start the handshake (or fail). */
  private async checkServer(socket: net.Socket, expected: number): Promise<void> {
    const error = await untrustedServer(socket, expected);
    if (this.phaseValue !== 'connecting' || this.socket !== socket) return;
    if (error !== undefined) {
      this.fail(error);
      return;
    }
    this.log.debug({ uid: expected }, 'socket served by the expected account');
    this.startHandshake();
    socket.resume();
    this.process();
  }

  private startHandshake(): void {
    this.phaseValue = 'handshake';
    const { endpoint, shared, limits } = this.settings;
    this.handshake = new Handshake({ password: endpoint.password, shared, limits }, (b) =>
      this.write(b),
    );
  }

  private onData(chunk: Buffer): void {
    this.received += chunk.length;
    if (this.phaseValue === 'closed') return;
    this.fences.received();
    this.queue.push(chunk);
    this.process();
  }

  /** Handle what is queued, as far as the send buffer lets us answer. */
  private process(): void {
    const socket = this.socket;
    if (socket === undefined || this.phaseValue === 'closed' || this.phaseValue === 'connecting')
      return;
    // replies made while handling one chunk go out in one write
    socket.cork();
    try {
      if (this.handshake !== undefined) {
        const result = this.handshake.advance(this.queue);
        if (result === undefined) return;
        this.onServerInit(result);
      }
      const parser = this.parser;
      const stop = parser?.parse();
      this.flow.afterPass();
      if (parser !== undefined && stop !== undefined)
        this.bounds?.afterParse(stop, parser.messagesCompleted);
    } catch (err) {
      this.fail(
        err instanceof RfbError
          ? err
          : new RfbError('handler-error', `error while handling server data: ${String(err)}`, {
              cause: err,
            }),
      );
    } finally {
      socket.uncork();
    }
  }

  private onServerInit(result: HandshakeResult): void {
    this.handshake = undefined;
    this.phaseValue = 'initialising';
    this.serverInfo = {
      width: result.width,
      height: result.height,
      name: result.name,
      protocolVersion: result.version,
      security: result.security,
      extendedDesktopSize: false,
    };
    this.log.info(
      {
        version: result.version,
        security: result.security,
        width: result.width,
        height: result.height,
        name: result.name,
      },
      'RFB handshake done',
    );
    const { sink, limits } = this.settings;
    const compressed =
      this.settings.endpoint.remote === true
        ? this.settings.remoteEncodings.map((e) => REMOTE_ENCODINGS[e])
        : [];
    this.parser = new ServerMessageParser({
      encodings: compressed,
      extendedClipboard: true,
      sink,
      width: result.width,
      height: result.height,
      limits,
      queue: this.queue,
      holdBack: () => this.bounds?.backedUp() ?? false,
      events: {
        updateEnd: (pixels) => this.onUpdateEnd(pixels),
        resized: (w, h) => this.onResized(w, h),
        extendedDesktopSize: (ev) => this.onExtendedDesktopSize(ev),
        endOfContinuousUpdates: () => this.flow.endOfContinuousUpdates(),
        fence: (flags, payload) => this.fences.onFence(flags, payload),
        extendedClipboard: (payload) => this.onExtendedClipboard(payload),
      },
    });
    sink.resize(result.width, result.height);
    const encodings: number[] = [...compressed, ...ENCODINGS_BASE];
    if (this.settings.continuousUpdates) encodings.push(Encoding.ContinuousUpdates);
    encodings.push(Encoding.Fence, EXTENDED_CLIPBOARD_ENCODING);
    this.write(encodeSetPixelFormat());
    this.write(encodeSetEncodings(encodings));
    this.flow.requestFull();
  }

  private onUpdateEnd(pixels: boolean): void {
    this.flow.updateEnded();
    // TigerVNC answers the first request with an update holding only the screen layout
    // (ExtendedDesktopSize) and sends the pixels in the next one: wait for those.
    if (this.phaseValue === 'initialising' && pixels) {
      this.phaseValue = 'ready';
      clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
      this.fences.startKeepalive();
      const info = this.info as ServerInfo;
      this.log.info(
        { continuousUpdates: info.continuousUpdates, fence: info.fence },
        'RFB connection ready',
      );
      this.settle(info);
      this.emit('ready', info);
    }
  }

  private onResized(width: number, height: number): void {
    if (this.serverInfo !== undefined) {
      this.serverInfo.width = width;
      this.serverInfo.height = height;
    }
    this.log.info({ width, height }, 'framebuffer resized');
    this.flow.resized();
  }

  private onExtendedDesktopSize(ev: ExtendedDesktopSizeEvent): void {
    if (this.serverInfo !== undefined) this.serverInfo.extendedDesktopSize = true;
    if (ev.applied) this.screens = ev.screens;
    if (ev.reason === 'this-client' && ev.status !== 'ok') {
      this.log.warn({ status: ev.status }, 'server refused SetDesktopSize');
      if (ev.status === 'prohibited') this.resizeProhibited = true;
    }
    this.emit('desktop-size', ev);
  }

  private onSocketClose(): void {
    if (this.phaseValue === 'closed') return;
    this.fail(
      this.handshake?.errorOnClose() ??
        new RfbError(
          'server-closed',
          this.phaseValue === 'connecting'
            ? `could not connect to ${describeEndpoint(this.settings.endpoint)}`
            : 'the VNC server closed the connection',
        ),
    );
  }

  /** The failure funnel. */
  private fail(error: RfbError): void {
    if (this.phaseValue === 'closed') return;
    const phase = this.phaseValue;
    this.phaseValue = 'closed';
    this.stopTimers();
    this.socket?.destroy();
    const level =
      error instanceof RfbProtocolError || error.code === 'handler-error' ? 'error' : 'warn';
    this.log[level](
      { code: error.code, phase, err: error },
      `RFB connection failed: ${error.message}`,
    );
    this.settle(error);
    // 'error' without a listener would throw from inside a socket handler
    if (this.listenerCount('error') > 0) this.emit('error', error);
    this.emit('close', { reason: error.message, error });
  }

  /** Resolve or reject a pending connect(). */
  private settle(outcome: ServerInfo | RfbError): void {
    const pending = this.pending;
    if (pending === undefined) return;
    this.pending = undefined;
    if (outcome instanceof RfbError) pending.reject(outcome);
    else pending.resolve(outcome);
  }

  private stopTimers(): void {
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.fences.stop();
    this.bounds?.stop();
  }

  private canSend(): boolean {
    return this.phaseValue === 'initialising' || this.phaseValue === 'ready';
  }

  private write(bytes: Buffer): void {
    this.bounds?.write(bytes);
  }

  private writeInput(bytes: Buffer): boolean {
    return this.bounds?.writeInput(bytes) ?? false;
  }
}

/** Round and clamp to 0..max; NaN becomes 0. */
function clamp(v: number, max: number): number {
  if (!(v > 0)) return 0;
  return Math.min(Math.round(v), Math.max(0, max));
}
