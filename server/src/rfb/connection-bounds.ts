/**
 * The byte and time bounds of one RFB connection (docs/architecture.md, decision 13), both
 * ways. Towards the server: our protocol replies and the desktop's input wait in the socket's
 * send buffer, which is bounded; while it is backed up we read no more of the server's
 * messages (so it cannot make us answer more), and a server that leaves it unread too long
 * is dropped. From the server: a message may take only so long from its first byte to its
 * last, and only so many messages may arrive a second.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { RfbError, RfbProtocolError } from './errors.js';
import type { ParseStop } from './parser.js';

/**
 * Unsent protocol replies (update requests, fence answers) at which we stop reading the
 * server's messages until the socket drains, bytes. A server that floods requests for
 * replies and reads none gets at most this much of our memory (plus one message's answer).
 */
export const REPLY_HIGH_WATER_BYTES = 64 * 1024;
/**
 * Server messages a connection may send in a burst, and per second after it. A desktop sends
 * tens of updates a second (TigerVNC caps itself at 60) and a few fences; a server sending
 * thousands of empty updates or fences a second only burns our CPU, and is cut off.
 */
const MESSAGE_BURST = 5_000;
const MESSAGES_PER_SEC = 1_000;

export interface ConnectionBoundsOptions {
  /** most bytes waiting in the send buffer; at least REPLY_HIGH_WATER_BYTES */
  sendBufferBytes: number;
  /** how long the server may leave what we sent unread, ms */
  sendStallMs: number;
  /** how long one server message may take from its first byte to its last, ms */
  messageTimeoutMs: number;
  /** a bound was broken: the connection must end with this error */
  fail(error: RfbError): void;
  /** reading resumed after the send buffer drained: handle what was held back */
  resumed(): void;
  log: Logger;
}

export class ConnectionBounds {
  private readonly sendBufferBytes: number;
  /** runs while the send buffer is backed up; cleared when the socket drains */
  private stallTimer: NodeJS.Timeout | undefined;
  /** runs while a server message is incomplete */
  private messageTimer: NodeJS.Timeout | undefined;
  /** parser.messagesCompleted when messageTimer was started */
  private messageMark = -1;
  /** we stopped reading the socket until it drains */
  private readPaused = false;
  private readonly messageBudget = { tokens: MESSAGE_BURST, at: 0, counted: 0 };
  /** the connection is over (closed or failed): a late drain changes nothing */
  private stopped = false;

  constructor(
    private readonly socket: Duplex,
    private readonly opts: ConnectionBoundsOptions,
  ) {
    this.sendBufferBytes = Math.max(REPLY_HIGH_WATER_BYTES, opts.sendBufferBytes);
    socket.on('drain', () => this.onDrain());
  }

  /** Bytes waiting in the socket towards the server. */
  get sendBuffered(): number {
    return this.socket.writableLength;
  }

  /** Is the send buffer too full to answer another server message? */
  backedUp(): boolean {
    return this.sendBuffered >= REPLY_HIGH_WATER_BYTES;
  }

  /** Protocol traffic of ours; bounded by reading no more server messages while backed up. */
  write(bytes: Buffer): void {
    if (this.socket.destroyed) return;
    this.socket.write(bytes);
  }

  /** Input for the desktop: refused (false) when it would overfill the send buffer. */
  writeInput(bytes: Buffer): boolean {
    if (this.socket.destroyed) return false;
    if (this.socket.writableLength + bytes.length > this.sendBufferBytes) {
      this.startStallTimer();
      return false;
    }
    this.socket.write(bytes);
    return true;
  }

  /**
   * After a parse pass: count the messages it completed (throws 'message-flood' past the
   * budget), stop reading while replies are held back, and time an unfinished message.
   */
  afterParse(stop: ParseStop, messagesCompleted: number): void {
    this.spendMessages(messagesCompleted);
    if (stop === 'held') {
      // Backed up: read nothing more until the socket drains, so the server cannot make us
      // queue more answers (or hold more of its bytes) than we allow.
      if (!this.readPaused) {
        this.readPaused = true;
        this.socket.pause();
        this.opts.log.debug({ buffered: this.sendBuffered }, 'send buffer full: reading paused');
      }
      this.startStallTimer();
    }
    if (stop !== 'partial') {
      clearTimeout(this.messageTimer);
      this.messageTimer = undefined;
      return;
    }
    // a message is incomplete: it gets messageTimeoutMs from its first byte
    if (this.messageTimer !== undefined && this.messageMark === messagesCompleted) return;
    clearTimeout(this.messageTimer);
    this.messageMark = messagesCompleted;
    this.messageTimer = setTimeout(() => {
      this.opts.fail(
        new RfbError(
          'message-timeout',
          `the VNC server started a message and did not finish it within ${this.opts.messageTimeoutMs} ms`,
        ),
      );
    }, this.opts.messageTimeoutMs);
    this.messageTimer.unref();
  }

  /** Clears the timers; the connection is over. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.stallTimer);
    clearTimeout(this.messageTimer);
    this.stallTimer = undefined;
    this.messageTimer = undefined;
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
    if (this.stopped) return;
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    if (this.readPaused) {
      this.readPaused = false;
      this.socket.resume();
      this.opts.resumed(); // what was held back
    }
  }

  private startStallTimer(): void {
    if (this.stallTimer !== undefined) return;
    this.stallTimer = setTimeout(() => {
      this.opts.fail(
        new RfbError(
          'send-stalled',
          `the VNC server has not read what was sent to it for ${this.opts.sendStallMs} ms (${this.sendBuffered} bytes waiting)`,
        ),
      );
    }, this.opts.sendStallMs);
    this.stallTimer.unref();
  }
}
