/**
 * Errors of the RFB client. `code` is for programs (switch on it, count it in metrics);
 * `message` is for people (logs, the admin console) and says what to check.
 */

/** The server broke the protocol, refused us, or sent something we will not accept. */
export type RfbProtocolErrorCode =
  // ProtocolVersion
  | 'bad-version'
  | 'unsupported-version'
  // Security
  | 'security-refused'
  | 'no-acceptable-security'
  | 'password-required'
  | 'auth-failed'
  // ServerInit and framebuffer geometry
  | 'bad-framebuffer-size'
  /** larger than the pool allows (width, height or area) */
  | 'framebuffer-too-large'
  /** the screen size changed more often than a desktop ever needs to */
  | 'resize-flood'
  /** far more messages a second than a desktop ever sends (empty updates, fences) */
  | 'message-flood'
  | 'name-too-long'
  // server messages
  | 'unknown-message-type'
  | 'colour-map-unsupported'
  | 'bad-fence'
  | 'unexpected-fence'
  // FramebufferUpdate rectangles
  | 'unknown-encoding'
  | 'rect-out-of-bounds'
  | 'copy-source-out-of-bounds'
  | 'cursor-too-large'
  | 'bad-screen-layout'
  // compressed encodings (ZRLE, Tight)
  /** a zlib stream that is not deflate */
  | 'bad-compressed-data'
  /** a zlib stream inflating to more than its rectangle can hold (a zip bomb) */
  | 'decompressed-too-large'
  | 'bad-zrle'
  | 'bad-tight';

/** The connection itself failed or was ended; not the server's bytes' fault. */
export type RfbConnectionErrorCode =
  | 'connect-timeout'
  | 'inactivity-timeout'
  /** the server started a message and did not finish it in time (a stall or a drip feed) */
  | 'message-timeout'
  /** the server stopped reading what we send (its input, our protocol replies) */
  | 'send-stalled'
  /** a unix socket served by another account than the desktop's */
  | 'untrusted-server'
  | 'socket-error'
  | 'server-closed'
  | 'closed'
  /** our own sink or an event listener threw while handling server data */
  | 'handler-error';

export type RfbErrorCode = RfbProtocolErrorCode | RfbConnectionErrorCode;

export class RfbError extends Error {
  override name = 'RfbError';
  readonly viewerMessage: string | undefined;

  constructor(
    readonly code: RfbErrorCode,
    message: string,
    options?: ErrorOptions & {
      /**
       * A message fit for the desktop's user, when the thrower built one only from our own
       * numbers and words (never from the server's strings). See viewerReason().
       */
      viewerMessage?: string;
    },
  ) {
    super(message, options);
    this.viewerMessage = options?.viewerMessage;
  }
}

/** Thrown by the handshake and the message parser; the connection cannot continue. */
export class RfbProtocolError extends RfbError {
  override name = 'RfbProtocolError';

  constructor(
    override readonly code: RfbProtocolErrorCode,
    message: string,
    options?: { viewerMessage?: string },
  ) {
    super(code, message, options);
  }
}

/** Why a viewer cannot see its desktop: a code its client can switch on, words for its user. */
export interface ViewerReason {
  /**
   * DESKTOP_TOO_LARGE, DESKTOP_PROTOCOL_ERROR, DESKTOP_UNTRUSTED (refused for good);
   * DESKTOP_TIMEOUT, DESKTOP_UNAVAILABLE (worth retrying: the client does so by itself)
   */
  code: string;
  message: string;
}

/**
 * The reason a viewer is shown for a failed RFB link. Sanitised: it never carries text the
 * VNC server chose (a reason string, a desktop name), which could pose as a message of ours;
 * the details stay in the log.
 */
export function viewerReason(err: RfbError): ViewerReason {
  const own = err.viewerMessage;
  switch (err.code) {
    case 'framebuffer-too-large':
      return {
        code: 'DESKTOP_TOO_LARGE',
        message: own ?? "the desktop's screen is larger than this pool allows",
      };
    case 'message-flood':
      return {
        code: 'DESKTOP_PROTOCOL_ERROR',
        message: 'the desktop sent far more messages than a desktop does and was disconnected',
      };
    case 'resize-flood':
      return {
        code: 'DESKTOP_PROTOCOL_ERROR',
        message: 'the desktop changed its screen size too often and was disconnected',
      };
    case 'untrusted-server':
      return {
        code: 'DESKTOP_UNTRUSTED',
        message:
          "the desktop's connection is served by another account than the desktop's own, so it was refused; an administrator has the details",
      };
    case 'connect-timeout':
    case 'inactivity-timeout':
    case 'message-timeout':
      return { code: 'DESKTOP_TIMEOUT', message: 'the desktop did not answer in time' };
    case 'send-stalled':
      return {
        code: 'DESKTOP_TIMEOUT',
        message: 'the desktop stopped accepting input and was disconnected',
      };
    case 'socket-error':
    case 'server-closed':
    case 'closed':
      return { code: 'DESKTOP_UNAVAILABLE', message: 'the desktop could not be reached' };
    case 'security-refused':
    case 'no-acceptable-security':
    case 'password-required':
    case 'auth-failed':
      return {
        code: 'DESKTOP_REFUSED',
        message:
          'the desktop refused the connection (authentication); an administrator has the details',
      };
    case 'handler-error':
      return { code: 'DESKTOP_UNAVAILABLE', message: 'the desktop link failed on the server' };
    default:
      return {
        code: 'DESKTOP_PROTOCOL_ERROR',
        message: `the desktop sent data this server does not accept (${err.code})`,
      };
  }
}
