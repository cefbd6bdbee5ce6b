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
  | 'name-too-long'
  // server messages
  | 'unknown-message-type'
  | 'colour-map-unsupported'
  | 'cut-text-too-long'
  | 'bad-fence'
  | 'unexpected-fence'
  // FramebufferUpdate rectangles
  | 'unknown-encoding'
  | 'rect-out-of-bounds'
  | 'copy-source-out-of-bounds'
  | 'cursor-too-large'
  | 'bad-screen-layout';

/** The connection itself failed or was ended; not the server's bytes' fault. */
export type RfbConnectionErrorCode =
  | 'connect-timeout'
  | 'inactivity-timeout'
  | 'socket-error'
  | 'server-closed'
  | 'closed'
  /** our own sink or an event listener threw while handling server data */
  | 'handler-error';

export type RfbErrorCode = RfbProtocolErrorCode | RfbConnectionErrorCode;

export class RfbError extends Error {
  override name = 'RfbError';

  constructor(
    readonly code: RfbErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Thrown by the handshake and the message parser; the connection cannot continue. */
export class RfbProtocolError extends RfbError {
  override name = 'RfbProtocolError';

  constructor(
    override readonly code: RfbProtocolErrorCode,
    message: string,
  ) {
    super(code, message);
  }
}
