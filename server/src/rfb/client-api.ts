/**
 * The RfbClient's surface: what it is given (options, and the defaults of those it may be
 * left without) and what it tells (server facts, events, phases).
 */
import type { Logger } from 'pino';
import type { RfbEndpoint } from './endpoint.js';
import type { RfbError } from './errors.js';
import type { ExtendedDesktopSizeEvent } from './framebuffer-size.js';
import type { RfbSecurity, RfbVersion } from './handshake.js';
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
  /**
   * The compressed encodings asked for on a remote endpoint (`endpoint.remote`), most
   * preferred first; local endpoints never ask for them. Tight is lossless here (no JPEG
   * quality level is sent).
   * @default ['tight', 'zrle']
   */
  remoteEncodings?: readonly RemoteEncoding[];
}

/** A compressed encoding the client can decode. */
export type RemoteEncoding = 'tight' | 'zrle';

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

/** The options with every default filled in. */
export type RfbClientSettings = Required<Omit<RfbClientOptions, 'logger'>>;

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_KEEPALIVE_MS = 30_000;
const DEFAULT_SEND_BUFFER_BYTES = 1024 * 1024;
const DEFAULT_SEND_STALL_MS = 15_000;
const DEFAULT_MESSAGE_TIMEOUT_MS = 30_000;
const DEFAULT_REMOTE_ENCODINGS: readonly RemoteEncoding[] = ['tight', 'zrle'];

export function clientSettings(options: RfbClientOptions): RfbClientSettings {
  return {
    endpoint: options.endpoint,
    sink: options.sink,
    limits: options.limits ?? DEFAULT_RFB_LIMITS,
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    keepaliveMs: options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS,
    shared: options.shared ?? true,
    continuousUpdates: options.continuousUpdates ?? true,
    sendBufferBytes: options.sendBufferBytes ?? DEFAULT_SEND_BUFFER_BYTES,
    sendStallMs: options.sendStallMs ?? DEFAULT_SEND_STALL_MS,
    messageTimeoutMs: options.messageTimeoutMs ?? DEFAULT_MESSAGE_TIMEOUT_MS,
    remoteEncodings: options.remoteEncodings ?? DEFAULT_REMOTE_ENCODINGS,
  };
}
