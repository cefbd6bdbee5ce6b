/**
 * The RFB handshake up to ServerInit, as a resumable state machine with no I/O of its
 * own: `advance` reads what the server sent from a queue and hands replies to `send`.
 *
 * ProtocolVersion → Security (3.7+: a list, 3.3: the server's choice) → VNC auth
 * challenge → SecurityResult (+ reason in 3.8) → ClientInit → ServerInit.
 */
import type { ByteQueue } from './byte-queue.js';
import { MAX_REASON_LENGTH, SecurityType } from './constants.js';
import { assertFramebufferSize } from './framebuffer-size.js';
import { RfbError, RfbProtocolError } from './errors.js';
import { DEFAULT_RFB_LIMITS, type RfbLimits } from './types.js';
import { VNC_CHALLENGE_LENGTH, vncAuthResponse } from './vnc-auth.js';

export type RfbVersion = '3.3' | '3.7' | '3.8';
export type RfbSecurity = 'none' | 'vnc-auth';

export interface HandshakeResult {
  version: RfbVersion;
  security: RfbSecurity;
  width: number;
  height: number;
  name: string;
}

export interface HandshakeOptions {
  /** VNC authentication password; without it only security type None is possible */
  password?: string;
  /** ClientInit shared-flag: leave other viewers of the desktop connected */
  shared: boolean;
  limits?: RfbLimits;
}

export type HandshakeStep =
  | 'version'
  | 'security-types'
  | 'security-type-33'
  | 'security-refused-reason'
  | 'vnc-challenge'
  | 'security-result'
  | 'security-result-reason'
  | 'server-init'
  | 'done';

/** "RFB xxx.yyy\n" */
const VERSION_LENGTH = 12;
const VERSION_PATTERN = /^RFB (\d{3})\.(\d{3})\n$/;
const VERSION_PREFIX = 'RFB ';
/** U16 width, U16 height, 16-byte PIXEL_FORMAT, U32 name-length */
const SERVER_INIT_HEADER_LENGTH = 24;

const SECURITY_NAMES: Record<number, string> = {
  0: 'Invalid',
  1: 'None',
  2: 'VNC authentication',
  5: 'RA2',
  6: 'RA2ne',
  16: 'Tight',
  17: 'Ultra',
  18: 'TLS',
  19: 'VeNCrypt',
  20: 'SASL',
  30: 'Apple Remote Desktop',
};

export class Handshake {
  private state: HandshakeStep = 'version';
  private version: RfbVersion = '3.8';
  private security: RfbSecurity = 'none';
  private readonly limits: RfbLimits;

  constructor(
    private readonly options: HandshakeOptions,
    private readonly send: (bytes: Buffer) => void,
  ) {
    this.limits = options.limits ?? DEFAULT_RFB_LIMITS;
  }

  get step(): HandshakeStep {
    return this.state;
  }

  /**
   * Consume handshake bytes. Returns the result once ServerInit has been read (bytes
   * after it stay in the queue for the message parser), undefined while waiting.
   * Throws RfbProtocolError when the server breaks the protocol or refuses us.
   */
  advance(q: ByteQueue): HandshakeResult | undefined {
    for (;;) {
      const result = this.stepOnce(q);
      if (result === 'wait') return undefined;
      if (result !== 'continue') return result;
    }
  }

  /** The error to report when the server hangs up in the current step. */
  errorOnClose(): RfbError {
    switch (this.state) {
      case 'security-result':
      case 'security-result-reason':
        return new RfbProtocolError(
          'auth-failed',
          this.security === 'vnc-auth'
            ? 'the VNC server closed the connection after authentication; check the password'
            : 'the VNC server closed the connection during security negotiation',
        );
      case 'security-refused-reason':
        return new RfbProtocolError(
          'security-refused',
          'the VNC server refused the connection without a reason',
        );
      default:
        return new RfbError(
          'server-closed',
          `the VNC server closed the connection during the handshake (${this.state})`,
        );
    }
  }

  private stepOnce(q: ByteQueue): HandshakeResult | 'wait' | 'continue' {
    switch (this.state) {
      case 'version':
        return this.readVersion(q);
      case 'security-types':
        return this.readSecurityTypes(q);
      case 'security-type-33':
        return this.readSecurityType33(q);
      case 'security-refused-reason': {
        const reason = readReason(q);
        if (reason === undefined) return 'wait';
        throw new RfbProtocolError(
          'security-refused',
          `the VNC server refused the connection: ${reason}`,
        );
      }
      case 'vnc-challenge':
        return this.readChallenge(q);
      case 'security-result':
        return this.readSecurityResult(q);
      case 'security-result-reason': {
        const reason = readReason(q);
        if (reason === undefined) return 'wait';
        throw new RfbProtocolError('auth-failed', `VNC authentication failed: ${reason}`);
      }
      case 'server-init':
        return this.readServerInit(q);
      case 'done':
        return 'wait';
    }
  }

  private readVersion(q: ByteQueue): 'wait' | 'continue' {
    // Catch a non-VNC peer (an HTTP server, an SSH banner) as soon as its first bytes
    // arrive rather than waiting for 12 bytes it may never send.
    for (let i = 0; i < Math.min(q.available, VERSION_PREFIX.length); i++) {
      if (q.peekU8(i) !== VERSION_PREFIX.charCodeAt(i)) {
        throw new RfbProtocolError(
          'bad-version',
          `not an RFB server: it greeted with ${describeBytes(q, VERSION_LENGTH)}`,
        );
      }
    }
    if (q.available < VERSION_LENGTH) return 'wait';
    const raw = q.read(VERSION_LENGTH).toString('latin1');
    const m = VERSION_PATTERN.exec(raw);
    if (m === null)
      throw new RfbProtocolError('bad-version', `malformed ProtocolVersion ${JSON.stringify(raw)}`);
    const major = Number(m[1]);
    const minor = Number(m[2]);
    this.version = pickVersion(major, minor, raw);
    this.send(Buffer.from(`RFB 003.00${this.version.slice(2)}\n`, 'latin1'));
    this.state = this.version === '3.3' ? 'security-type-33' : 'security-types';
    return 'continue';
  }

  private readSecurityTypes(q: ByteQueue): 'wait' | 'continue' {
    if (q.available < 1) return 'wait';
    const count = q.peekU8();
    if (count === 0) {
      q.skip(1);
      this.state = 'security-refused-reason';
      return 'continue';
    }
    if (q.available < 1 + count) return 'wait';
    q.skip(1);
    const offered = [...q.read(count)];
    const chosen = this.chooseSecurity(offered);
    this.send(Buffer.from([chosen]));
    this.startSecurity(chosen);
    return 'continue';
  }

  /** RFB 3.3: the server decides, with a U32. */
  private readSecurityType33(q: ByteQueue): 'wait' | 'continue' {
    if (q.available < 4) return 'wait';
    const type = q.readU32();
    if (type === SecurityType.Invalid) {
      this.state = 'security-refused-reason';
      return 'continue';
    }
    // the server's choice must be one we accept: it cannot impose another
    this.chooseSecurity([type]);
    this.startSecurity(type);
    return 'continue';
  }

  /**
   * Pick from the server's list. With a password, VNC auth is preferred; without one,
   * None. Anything else (TLS, VeNCrypt, ...) is not spoken here and ends the handshake.
   */
  private chooseSecurity(offered: number[]): number {
    const hasNone = offered.includes(SecurityType.None);
    const hasVnc = offered.includes(SecurityType.VncAuth);
    const havePassword = this.options.password !== undefined;
    if (hasVnc && havePassword) return SecurityType.VncAuth;
    if (hasNone) return SecurityType.None;
    if (hasVnc) {
      throw new RfbProtocolError(
        'password-required',
        'the VNC server requires VNC authentication but no password is configured for this desktop',
      );
    }
    throw new RfbProtocolError(
      'no-acceptable-security',
      `the VNC server offers only ${offered.map(securityName).join(', ')}; this client supports None and VNC authentication`,
    );
  }

  private startSecurity(type: number): void {
    if (type === SecurityType.VncAuth) {
      this.security = 'vnc-auth';
      this.state = 'vnc-challenge';
      return;
    }
    this.security = 'none';
    // None: 3.8 still sends a SecurityResult; 3.3 and 3.7 go straight to initialisation
    if (this.version === '3.8') {
      this.state = 'security-result';
    } else {
      this.sendClientInit();
    }
  }

  private readChallenge(q: ByteQueue): 'wait' | 'continue' {
    if (q.available < VNC_CHALLENGE_LENGTH) return 'wait';
    const challenge = q.read(VNC_CHALLENGE_LENGTH);
    this.send(vncAuthResponse(challenge, this.options.password ?? ''));
    this.state = 'security-result';
    return 'continue';
  }

  private readSecurityResult(q: ByteQueue): 'wait' | 'continue' {
    if (q.available < 4) return 'wait';
    const status = q.readU32();
    if (status === 0) {
      this.sendClientInit();
      return 'continue';
    }
    if (this.version === '3.8') {
      this.state = 'security-result-reason';
      return 'continue';
    }
    throw new RfbProtocolError(
      'auth-failed',
      status === 2
        ? 'VNC authentication failed: too many attempts'
        : this.security === 'vnc-auth'
          ? 'VNC authentication failed: the server rejected the password'
          : 'the VNC server rejected the connection',
    );
  }

  private sendClientInit(): void {
    this.send(Buffer.from([this.options.shared ? 1 : 0]));
    this.state = 'server-init';
  }

  private readServerInit(q: ByteQueue): HandshakeResult | 'wait' {
    if (q.available < SERVER_INIT_HEADER_LENGTH) return 'wait';
    const width = q.peekU16(0);
    const height = q.peekU16(2);
    const nameLength = q.peekU32(20);
    assertFramebufferSize(width, height, this.limits, 'ServerInit');
    if (nameLength > this.limits.maxNameLength) {
      throw new RfbProtocolError(
        'name-too-long',
        `ServerInit desktop name of ${nameLength} bytes exceeds the ${this.limits.maxNameLength}-byte limit`,
      );
    }
    if (q.available < SERVER_INIT_HEADER_LENGTH + nameLength) return 'wait';
    // the server's own pixel format does not matter: we send SetPixelFormat next
    q.skip(SERVER_INIT_HEADER_LENGTH);
    const name = decodeText(q.read(nameLength));
    this.state = 'done';
    return { version: this.version, security: this.security, width, height, name };
  }
}

/**
 * The version we answer with: never above the server's (RFC 6143 §7.1.1). 3.5 and 3.6 are
 * known mislabels of 3.3; anything from 3.8 up (including 4.x and 5.x) is served as 3.8.
 */
function pickVersion(major: number, minor: number, raw: string): RfbVersion {
  if (major > 3 || (major === 3 && minor >= 8)) return '3.8';
  if (major === 3 && minor === 7) return '3.7';
  if (major === 3 && minor >= 3) return '3.3';
  throw new RfbProtocolError(
    'unsupported-version',
    `server speaks ${JSON.stringify(raw.trim())}; 3.3 or later is needed`,
  );
}

/**
 * A reason string (U32 length + text) or undefined while incomplete. Longer than
 * MAX_REASON_LENGTH is not waited for: the server closes right after it anyway.
 */
function readReason(q: ByteQueue): string | undefined {
  if (q.available < 4) return undefined;
  const length = q.peekU32();
  if (length > MAX_REASON_LENGTH) {
    q.skip(4);
    return `(a ${length}-byte reason, longer than the ${MAX_REASON_LENGTH}-byte limit, not shown)`;
  }
  if (q.available < 4 + length) return undefined;
  q.skip(4);
  return decodeText(q.read(length)) || '(no reason given)';
}

/** Names and reasons: UTF-8 when valid (TigerVNC, QEMU), else Latin-1 (the old spec). */
function decodeText(bytes: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return bytes.toString('latin1');
  }
}

function securityName(type: number): string {
  const name = SECURITY_NAMES[type];
  return name === undefined ? `type ${type}` : `${name} (${type})`;
}

function describeBytes(q: ByteQueue, max: number): string {
  const n = Math.min(q.available, max);
  const bytes: number[] = [];
  for (let i = 0; i < n; i++) bytes.push(q.peekU8(i));
  return JSON.stringify(Buffer.from(bytes).toString('latin1'));
}
