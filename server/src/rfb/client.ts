/**
 * RfbClient: one RFB connection to one desktop. It owns the socket, runs the handshake,
 * asks for our pixel format and encodings, keeps updates flowing (continuous updates when
 * the server offers them, otherwise exactly one FramebufferUpdateRequest in flight), and
 * sends input.
 *
 * Every failure goes through one funnel (`fail`): it logs the details, closes the socket,
 * rejects a pending connect(), emits `error` (if anyone listens) and `close` with a short
 * reason. Nothing thrown while handling server bytes escapes the socket's handlers, and
 * nothing here touches any other connection.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { pino, type Logger } from 'pino';
import { ByteQueue } from './byte-queue.js';
import { connectEndpoint, describeEndpoint, type RfbEndpoint } from './endpoint.js';
import {
  encodeClientCutText,
  encodeClientFence,
  encodeEnableContinuousUpdates,
  encodeFramebufferUpdateRequest,
  encodeKeyEvent,
  encodeLatin1,
  encodePointerEvent,
  encodeSetDesktopSize,
  encodeSetEncodings,
  encodeSetPixelFormat,
} from './client-messages.js';
import { Encoding, FenceFlag } from './constants.js';
import type { ExtendedDesktopSizeEvent, Screen } from './framebuffer-size.js';
import { RfbError, RfbProtocolError } from './errors.js';
import { Handshake, type HandshakeResult, type RfbSecurity, type RfbVersion } from './handshake.js';
import { ServerMessageParser, type ParseStop } from './parser.js';
import { peerProcesses } from './peer-uid.js';
import { DEFAULT_RFB_LIMITS, type FramebufferSink, type RfbLimits } from './types.js';

export interface RfbClientOptions {
  /** where the desktop's VNC server listens */
  endpoint: RfbEndpoint;
  /** receives size, pixels, cursor, clipboard */
  sink: FramebufferSink;
  /** @default a silent logger */
  logger?: Logger;
  /** @default DEFAULT_RFB_LIMITS */
  limits?: RfbLimits;
  /**
   * Time from connect() until the first framebuffer update with pixels, ms. Covers
   * the socket connect, the handshake and the first update.
   * @default 10_000
   */
  connectTimeoutMs?: number;
  /**
   * Silence from the server after which we send a fence to check it is alive, ms; if that
   * goes unanswered for as long again, the connection is closed ('inactivity-timeout').
   * Only for servers that support fences (TigerVNC); for TCP endpoints TCP keepalive is
   * also enabled. 0 disables.
   * @default 30_000
   */
  keepaliveMs?: number;
  /**
   * ClientInit shared-flag. true leaves other viewers of the same desktop connected.
   * @default true
   */
  shared?: boolean;
  /**
   * Offer continuous updates (-313). false keeps the request/response loop even with
   * servers that could push.
   * @default true
   */
  continuousUpdates?: boolean;
  /**
   * Most bytes waiting in the socket towards the server (its input, our protocol replies),
   * bytes. Input beyond it is refused; protocol replies stop well before it (we stop reading
   * the server's messages, so it cannot make us answer more).
   * @default 1 MiB
   */
  sendBufferBytes?: number;
  /**
   * How long the server may leave what we sent unread (the send buffer backed up) before the
   * connection is closed ('send-stalled'), ms.
   * @default 15_000
   */
  sendStallMs?: number;
  /**
   * How long one server message (a whole FramebufferUpdate, a clipboard) may take from its
   * first byte to its last before the connection is closed ('message-timeout'), ms. Catches a
   * server that stalls mid-message or drips bytes.
   * @default 30_000
   */
  messageTimeoutMs?: number;
}

/** What connect() resolves with; `client.info` keeps it current. */
export interface ServerInfo {
  width: number;
  height: number;
  name: string;
  protocolVersion: RfbVersion;
  security: RfbSecurity;
  /** the server pushes updates (continuous updates enabled) */
  continuousUpdates: boolean;
  fence: boolean;
  /** SetDesktopSize is possible */
  extendedDesktopSize: boolean;
}

export interface RfbCloseEvent {
  /** short, for people */
  reason: string;
  /** set when the connection failed rather than being closed by us */
  error?: RfbError;
}

export interface RfbClientEvents {
  /** the first framebuffer update with pixels has been applied */
  ready: [info: ServerInfo];
  error: [error: RfbError];
  close: [event: RfbCloseEvent];
  /** every ExtendedDesktopSize rectangle, including answers to setDesktopSize */
  'desktop-size': [event: ExtendedDesktopSizeEvent];
}

export type RfbClientPhase =
  'idle' | 'connecting' | 'handshake' | 'initialising' | 'ready' | 'closed';

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_KEEPALIVE_MS = 30_000;
const DEFAULT_SEND_BUFFER_BYTES = 1024 * 1024;
const DEFAULT_SEND_STALL_MS = 15_000;
const DEFAULT_MESSAGE_TIMEOUT_MS = 30_000;
/**
 * Unsent protocol replies (update requests, fence answers) at which we stop reading the
 * server's messages until the socket drains, bytes. A server that floods requests for
 * replies and reads none gets at most this much of our memory (plus one message's answer).
 */
const REPLY_HIGH_WATER_BYTES = 64 * 1024;
/**
 * Server messages a connection may send in a burst, and per second after it. A desktop sends
 * tens of updates a second (TigerVNC caps itself at 60) and a few fences; a server sending
 * thousands of empty updates or fences a second only burns our CPU, and is cut off.
 */
const MESSAGE_BURST = 5_000;
const MESSAGES_PER_SEC = 1_000;
/** After close(), unflushed writes get this long before the socket is destroyed, ms. */
const CLOSE_FLUSH_MS = 1_000;
/** Marks our keepalive fences (payload), so their answers are told apart. */
const KEEPALIVE_TAG = 'vdi-keepalive:';
/** Fence flags we honour in answers: we process messages strictly in order. */
const FENCE_FLAGS_HONOURED = FenceFlag.BlockBefore | FenceFlag.BlockAfter;

const ENCODINGS_BASE = [
  Encoding.CopyRect,
  Encoding.Raw,
  Encoding.DesktopSize,
  Encoding.ExtendedDesktopSize,
  Encoding.Cursor,
  Encoding.LastRect,
] as const;

export class RfbClient extends EventEmitter<RfbClientEvents> {
  private readonly endpoint: RfbEndpoint;
  private readonly sink: FramebufferSink;
  private readonly log: Logger;
  private readonly limits: RfbLimits;
  private readonly connectTimeoutMs: number;
  private readonly keepaliveMs: number;
  private readonly shared: boolean;
  private readonly offerContinuousUpdates: boolean;

  private phaseValue: RfbClientPhase = 'idle';
  private socket: net.Socket | undefined;
  private readonly queue = new ByteQueue();
  private handshake: Handshake | undefined;
  private parser: ServerMessageParser | undefined;
  private serverInfo: ServerInfo | undefined;
  private pending:
    { resolve: (info: ServerInfo) => void; reject: (err: Error) => void } | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private readonly sendBufferBytes: number;
  private readonly sendStallMs: number;
  private readonly messageTimeoutMs: number;
  /** runs while the send buffer is backed up; cleared when the socket drains */
  private stallTimer: NodeJS.Timeout | undefined;
  /** runs while a server message is incomplete */
  private messageTimer: NodeJS.Timeout | undefined;
  /** parser.messagesCompleted when messageTimer was started */
  private messageMark = -1;
  /** we stopped reading the socket until it drains */
  private readPaused = false;
  /** an update ended during this parse pass: request the next one once, after the pass */
  private updateWanted = false;
  private messageBudget = { tokens: MESSAGE_BURST, at: 0, counted: 0 };

  /** a FramebufferUpdateRequest awaits its update (request/response mode) */
  private updateRequested = false;
  private cuSupported = false;
  private cuEnabled = false;
  /** we asked the server to stop pushing and await its EndOfContinuousUpdates */
  private cuStopping = false;
  private paused = false;
  private screens: Screen[] = [];
  private lastReceived = 0;
  private keepaliveSeq = 0;
  private keepalivePayload: Buffer | undefined;

  constructor(options: RfbClientOptions) {
    super();
    this.endpoint = options.endpoint;
    this.sink = options.sink;
    this.limits = options.limits ?? DEFAULT_RFB_LIMITS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.keepaliveMs = options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
    this.shared = options.shared ?? true;
    this.offerContinuousUpdates = options.continuousUpdates ?? true;
    this.sendBufferBytes = Math.max(
      REPLY_HIGH_WATER_BYTES,
      options.sendBufferBytes ?? DEFAULT_SEND_BUFFER_BYTES,
    );
    this.sendStallMs = options.sendStallMs ?? DEFAULT_SEND_STALL_MS;
    this.messageTimeoutMs = options.messageTimeoutMs ?? DEFAULT_MESSAGE_TIMEOUT_MS;
    this.log = (options.logger ?? pino({ level: 'silent' })).child({
      rfb: describeEndpoint(this.endpoint),
    });
  }

  get phase(): RfbClientPhase {
    return this.phaseValue;
  }

  /** Current server facts (size follows resizes); undefined before ServerInit. */
  get info(): ServerInfo | undefined {
    return this.serverInfo === undefined ? undefined : { ...this.serverInfo };
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
    this.connectTimer = setTimeout(() => {
      this.fail(
        new RfbError(
          'connect-timeout',
          `no framebuffer from ${describeEndpoint(this.endpoint)} within ${this.connectTimeoutMs} ms (phase ${this.phaseValue})`,
        ),
      );
    }, this.connectTimeoutMs);

    const ep = this.endpoint;
    const socket = connectEndpoint(ep);
    this.socket = socket;
    if (ep.kind === 'tcp') {
      socket.setNoDelay(true); // input events are tiny and latency-sensitive
      if (this.keepaliveMs > 0) socket.setKeepAlive(true, this.keepaliveMs);
    }
    socket.on('connect', () => {
      if (this.phaseValue !== 'connecting') return;
      this.log.debug('socket connected');
      if (ep.kind === 'unix' && ep.serverUid !== undefined) {
        // not a byte of the server's is read before we know who it is
        socket.pause();
        void this.checkServer(socket, ep.serverUid);
      } else this.startHandshake();
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.onDrain());
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
   * Put text in the desktop's clipboard. RFB carries Latin-1 only: other characters
   * become '?'; the text is cut at limits.maxCutText bytes. false if not connected or the
   * server is not reading (nothing is sent then).
   */
  clientCutText(text: string): boolean {
    if (!this.canSend()) return false;
    return this.writeInput(encodeClientCutText(encodeLatin1(text, this.limits.maxCutText)));
  }

  /** Bytes waiting in the socket towards the server (ours to bound). */
  get sendBuffered(): number {
    return this.socket?.writableLength ?? 0;
  }

  /** Ask for the whole screen (non-incremental), e.g. when a viewer attaches. */
  requestFullUpdate(): boolean {
    const parser = this.parser;
    if (!this.canSend() || parser === undefined) return false;
    this.write(encodeFramebufferUpdateRequest(false, 0, 0, parser.width, parser.height));
    this.updateRequested = true;
    return true;
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
    if (
      !Number.isInteger(width) ||
      !Number.isInteger(height) ||
      width < 1 ||
      height < 1 ||
      width > Math.min(this.limits.maxWidth, 0xffff) ||
      height > Math.min(this.limits.maxHeight, 0xffff) ||
      width * height > this.limits.maxPixels
    ) {
      return false;
    }
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
   * Stop asking for updates (e.g. nobody is watching). With continuous updates the
   * server is told to stop pushing. Input still works.
   */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    if (this.cuEnabled && this.canSend() && this.parser !== undefined) {
      this.write(encodeEnableContinuousUpdates(false, 0, 0, this.parser.width, this.parser.height));
      this.cuEnabled = false;
      this.cuStopping = true;
    }
  }

  /** Resume updates after pause(). Call requestFullUpdate() too if the picture must be fresh. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (!this.canSend()) return;
    if (this.cuSupported && this.offerContinuousUpdates) this.enableContinuousUpdates();
    else this.requestIncrementalUpdate();
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
    let error: RfbError | undefined;
    try {
      const peers = await peerProcesses(socket);
      const strangers = peers.filter((p) => p.uid !== expected);
      if (strangers.length > 0) {
        error = new RfbError(
          'untrusted-server',
          `the socket is served by uid ${strangers.map((p) => `${p.uid} (pid ${p.pid})`).join(', ')}, not the desktop's uid ${expected}; refused`,
        );
      }
    } catch (err) {
      error = new RfbError(
        'untrusted-server',
        `could not tell who serves the socket (${(err as Error).message}); refused`,
        { cause: err },
      );
    }
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
    this.handshake = new Handshake(
      { password: this.endpoint.password, shared: this.shared, limits: this.limits },
      (b) => this.write(b),
    );
  }

  private onData(chunk: Buffer): void {
    if (this.phaseValue === 'closed') return;
    this.lastReceived = Date.now();
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
      const stop = this.parser?.parse();
      if (this.updateWanted) {
        this.updateWanted = false;
        this.requestIncrementalUpdate();
      }
      if (stop !== undefined) this.afterParse(stop);
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

  private afterParse(stop: ParseStop): void {
    const parser = this.parser as ServerMessageParser;
    this.spendMessages(parser.messagesCompleted);
    if (stop === 'held') {
      // Backed up: read nothing more until the socket drains, so the server cannot make us
      // queue more answers (or hold more of its bytes) than we allow.
      if (!this.readPaused) {
        this.readPaused = true;
        this.socket?.pause();
        this.log.debug({ buffered: this.sendBuffered }, 'send buffer full: reading paused');
      }
      this.startStallTimer();
    }
    if (stop !== 'partial') {
      clearTimeout(this.messageTimer);
      this.messageTimer = undefined;
      return;
    }
    // a message is incomplete: it gets messageTimeoutMs from its first byte
    if (this.messageTimer !== undefined && this.messageMark === parser.messagesCompleted) return;
    clearTimeout(this.messageTimer);
    this.messageMark = parser.messagesCompleted;
    this.messageTimer = setTimeout(() => {
      this.fail(
        new RfbError(
          'message-timeout',
          `the VNC server started a message and did not finish it within ${this.messageTimeoutMs} ms`,
        ),
      );
    }, this.messageTimeoutMs);
    this.messageTimer.unref();
  }

  private spendMessages(completed: number): void {
    const b = this.messageBudget;
    const now = Date.now();
    b.tokens = Math.min(MESSAGE_BURST, b.tokens + ((now - b.at) * MESSAGES_PER_SEC) / 1000);
    b.at = now;
    b.tokens -= completed - b.counted;
    b.counted = completed;
    if (b.tokens < 0) {
      throw new RfbProtocolError(
        'message-flood',
        `the VNC server sent more than ${MESSAGE_BURST} messages at once (${MESSAGES_PER_SEC}/s allowed after that)`,
      );
    }
  }

  private onDrain(): void {
    if (this.phaseValue === 'closed') return;
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    if (this.readPaused) {
      this.readPaused = false;
      this.socket?.resume();
      this.process(); // what was held back
    }
  }

  private startStallTimer(): void {
    if (this.stallTimer !== undefined) return;
    this.stallTimer = setTimeout(() => {
      this.fail(
        new RfbError(
          'send-stalled',
          `the VNC server has not read what was sent to it for ${this.sendStallMs} ms (${this.sendBuffered} bytes waiting)`,
        ),
      );
    }, this.sendStallMs);
    this.stallTimer.unref();
  }

  /** Is the send buffer too full to answer another server message? */
  private backedUp(): boolean {
    return this.sendBuffered >= REPLY_HIGH_WATER_BYTES;
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
      continuousUpdates: false,
      fence: false,
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
    this.parser = new ServerMessageParser({
      sink: this.sink,
      width: result.width,
      height: result.height,
      limits: this.limits,
      queue: this.queue,
      holdBack: () => this.backedUp(),
      events: {
        updateEnd: (pixels) => this.onUpdateEnd(pixels),
        resized: (w, h) => this.onResized(w, h),
        extendedDesktopSize: (ev) => this.onExtendedDesktopSize(ev),
        endOfContinuousUpdates: () => this.onEndOfContinuousUpdates(),
        fence: (flags, payload) => this.onFence(flags, payload),
      },
    });
    this.sink.resize(result.width, result.height);
    const encodings: number[] = [...ENCODINGS_BASE];
    if (this.offerContinuousUpdates) encodings.push(Encoding.ContinuousUpdates);
    encodings.push(Encoding.Fence);
    this.write(encodeSetPixelFormat());
    this.write(encodeSetEncodings(encodings));
    this.write(encodeFramebufferUpdateRequest(false, 0, 0, result.width, result.height));
    this.updateRequested = true;
  }

  private onUpdateEnd(pixels: boolean): void {
    this.updateRequested = false;
    // one request after the pass, however many updates it held (a flood of empty updates
    // costs one answer per chunk read, not one per update)
    this.updateWanted = true;
    // TigerVNC answers the first request with an update holding only the screen layout
    // (ExtendedDesktopSize) and sends the pixels in the next one: wait for those.
    if (this.phaseValue === 'initialising' && pixels) {
      this.phaseValue = 'ready';
      clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
      this.startKeepalive();
      const info = this.info as ServerInfo;
      this.log.info(
        { continuousUpdates: info.continuousUpdates, fence: info.fence },
        'RFB connection ready',
      );
      this.settle(info);
      this.emit('ready', info);
    }
  }

  /** Request/response mode: keep exactly one request in flight. */
  private requestIncrementalUpdate(): void {
    const parser = this.parser;
    if (
      this.cuEnabled ||
      this.paused ||
      this.updateRequested ||
      !this.canSend() ||
      parser === undefined
    )
      return;
    this.write(encodeFramebufferUpdateRequest(true, 0, 0, parser.width, parser.height));
    this.updateRequested = true;
  }

  private enableContinuousUpdates(): void {
    const parser = this.parser;
    if (parser === undefined || !this.canSend()) return;
    this.write(encodeEnableContinuousUpdates(true, 0, 0, parser.width, parser.height));
    this.cuEnabled = true;
    // TigerVNC drops outstanding requests when pushing starts; forget ours so that a later
    // fallback to requests is not stuck waiting for an answer that will not come
    this.updateRequested = false;
    if (this.serverInfo !== undefined) this.serverInfo.continuousUpdates = true;
  }

  /**
   * The first EndOfContinuousUpdates answers our -313 pseudo-encoding: the server can push.
   * Later ones mean pushing stopped: expected after pause(), otherwise we fall back to
   * requests.
   */
  private onEndOfContinuousUpdates(): void {
    if (!this.cuSupported) {
      this.cuSupported = true;
      this.log.debug('server supports continuous updates');
      if (!this.paused) this.enableContinuousUpdates();
      return;
    }
    if (this.cuStopping) {
      this.cuStopping = false;
      return;
    }
    this.cuEnabled = false;
    if (this.serverInfo !== undefined) this.serverInfo.continuousUpdates = false;
    this.log.info('server stopped continuous updates; falling back to update requests');
    this.requestIncrementalUpdate();
  }

  private onFence(flags: number, payload: Buffer): void {
    if (this.serverInfo !== undefined) this.serverInfo.fence = true;
    if ((flags & FenceFlag.Request) !== 0) {
      // answer with the same payload, the ordering flags we honour, and no request bit
      this.write(encodeClientFence(flags & FENCE_FLAGS_HONOURED, payload));
      return;
    }
    if (this.keepalivePayload !== undefined && payload.equals(this.keepalivePayload)) {
      this.keepalivePayload = undefined;
      return;
    }
    throw new RfbProtocolError(
      'unexpected-fence',
      'server sent a fence answer to a request we never made',
    );
  }

  private onResized(width: number, height: number): void {
    if (this.serverInfo !== undefined) {
      this.serverInfo.width = width;
      this.serverInfo.height = height;
    }
    this.log.info({ width, height }, 'framebuffer resized');
    // the pushed area was the old framebuffer; cover the new one
    if (this.cuEnabled) this.enableContinuousUpdates();
  }

  private onExtendedDesktopSize(ev: ExtendedDesktopSizeEvent): void {
    if (this.serverInfo !== undefined) this.serverInfo.extendedDesktopSize = true;
    if (ev.applied) this.screens = ev.screens;
    if (ev.reason === 'this-client' && ev.status !== 'ok') {
      this.log.warn({ status: ev.status }, 'server refused SetDesktopSize');
    }
    this.emit('desktop-size', ev);
  }

  private startKeepalive(): void {
    if (this.keepaliveMs <= 0) return;
    this.keepaliveTimer = setInterval(() => this.checkKeepalive(), this.keepaliveMs);
    this.keepaliveTimer.unref();
  }

  private checkKeepalive(): void {
    const silentMs = Date.now() - this.lastReceived;
    if (silentMs < this.keepaliveMs) return;
    if (this.keepalivePayload !== undefined) {
      this.fail(
        new RfbError(
          'inactivity-timeout',
          `the VNC server has not answered for ${silentMs} ms (keepalive fence unanswered)`,
        ),
      );
      return;
    }
    if (this.serverInfo?.fence !== true) return;
    this.keepalivePayload = Buffer.from(`${KEEPALIVE_TAG}${++this.keepaliveSeq}`, 'latin1');
    this.write(encodeClientFence(FenceFlag.Request, this.keepalivePayload));
  }

  private onSocketClose(): void {
    if (this.phaseValue === 'closed') return;
    this.fail(
      this.handshake?.errorOnClose() ??
        new RfbError(
          'server-closed',
          this.phaseValue === 'connecting'
            ? `could not connect to ${describeEndpoint(this.endpoint)}`
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
    clearInterval(this.keepaliveTimer);
    clearTimeout(this.stallTimer);
    clearTimeout(this.messageTimer);
    this.connectTimer = undefined;
    this.keepaliveTimer = undefined;
    this.stallTimer = undefined;
    this.messageTimer = undefined;
  }

  private canSend(): boolean {
    return this.phaseValue === 'initialising' || this.phaseValue === 'ready';
  }

  /** Protocol traffic of ours; bounded by reading no more server messages while backed up. */
  private write(bytes: Buffer): void {
    const socket = this.socket;
    if (socket === undefined || socket.destroyed) return;
    socket.write(bytes);
  }

  /** Input for the desktop: refused (false) when it would overfill the send buffer. */
  private writeInput(bytes: Buffer): boolean {
    const socket = this.socket;
    if (socket === undefined || socket.destroyed) return false;
    if (socket.writableLength + bytes.length > this.sendBufferBytes) {
      this.startStallTimer();
      return false;
    }
    socket.write(bytes);
    return true;
  }
}

/** Round and clamp to 0..max; NaN becomes 0. */
function clamp(v: number, max: number): number {
  if (!(v > 0)) return 0;
  return Math.min(Math.round(v), Math.max(0, max));
}
